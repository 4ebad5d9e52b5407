"""One distillation run: the student, its soft-label source, the active losses and how their weights move."""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import nn

from squeezer.compressors.base import InvalidConfig, TrialContext
from squeezer.compressors.distill import losses
from squeezer.compressors.distill.config import DistillConfig
from squeezer.compressors.distill.controller import AdaptiveController, Transfer, transfer
from squeezer.compressors.distill.features import Projection, capture, hint_layers, output_shapes, pair_layers
from squeezer.compressors.distill.schedules import DynamicWeightAverage, temperature_at
from squeezer.compressors.distill.sources import EmaTeacher, Peer, Source, Teachers
from squeezer.compressors.distill.teacher_outputs import TeacherOutputs
from squeezer.compressors.distill.transformer import Encoded, TransformerHints, is_encoder
from squeezer.compressors.training import fit

#: The probe and the labeled subset depend on the data only, so every trial of a study sees the same ones.
_PROBE_SEED, _LABEL_SEED = 7_919, 104_729


class Distiller:
    """Trains ``student`` in place under ``config``; ``run()`` returns it in eval mode."""

    def __init__(self, config: DistillConfig, student: nn.Module, ctx: TrialContext) -> None:
        self.c, self.student, self.ctx = config, student.to(ctx.device.where), ctx
        self.outputs = _outputs(config, ctx)
        self.source = _source(config, student, ctx, self.outputs)
        self.train_idx, self.probe = _split_probe(config, len(ctx.train_x))
        self.labeled = ctx.device.put(_labeled(config.label_fraction, len(ctx.train_x)))
        self.encoders = _encoders(config, student, ctx.teacher)
        self.hints, self.maps = self._pairs() if self.encoders is None else ([], [])
        for module in [self.encoders, *(projection for _, _, projection in self.hints)]:
            if module is not None:
                module.to(ctx.device.where)
        if self.outputs is not None:
            self.outputs.prefetch([t for _, t, _ in self.hints], [t for _, t in self.maps])
        self.active = {k: w for k, w in config.weights().items() if w > 0}
        for loss, available in (("feature", self.hints), ("attention", self.maps), ("embedding", [])):
            if not (available or self.encoders):  # e.g. an MLP student has no maps; only encoders have embeddings
                self.active.pop(loss, None)
        if not self.active:
            raise InvalidConfig("attention_weight", "the only active losses need intermediate layers this student "
                                "and teacher do not share (feature maps, or transformer layers)", config.weights())
        self.temperature, self.multipliers = config.temperature, {k: 1.0 for k in self.active}
        self.dwa = DynamicWeightAverage(list(self.active), config.dwa_temperature)
        self.controller = AdaptiveController(config.temperature, config.temperature_end, config.controller_gain)
        self.initial: Transfer | None = None
        self._sums: dict[str, torch.Tensor | float] = defaultdict(float)  # summed on the device: no sync per batch
        self._count = 0

    def run(self) -> nn.Module:
        extra = [*self.source.parameters, *(p for _, _, proj in self.hints for p in proj.parameters()),
                 *(self.encoders.parameters() if self.encoders else ())]
        return fit(self.student, self.ctx, self.loss, self.c.optim(), stage="distill", extra=extra,
                   indices=self.train_idx, before_epoch=self.before_epoch, after_epoch=self.after_epoch,
                   after_step=self.source.after_step)

    @property
    def _outputs(self) -> TeacherOutputs:
        if self.outputs is None:  # the config allows feature and attention losses with method kd only
            raise RuntimeError("feature and attention losses need the teacher's outputs")
        return self.outputs

    def weights(self) -> dict[str, float]:
        """This epoch's weight of each active loss: the configured one times the schedule's multiplier."""
        return {k: w * self.multipliers[k] for k, w in self.active.items()}

    def loss(self, idx: torch.Tensor) -> torch.Tensor:
        x, y, T = self.ctx.inputs(idx), self.ctx.labels(idx), self.temperature
        layers = [s for s, _, _ in self.hints] + [s for s, _ in self.maps]
        encoded = self._encode(idx, x)
        with capture(self.student, layers) as features:
            logits = encoded[0].logits if encoded else self.student(x)
        needs_targets = "soft" in self.active or self.c.method == "dml"  # the peer trains in targets()
        targets = self.source.targets(idx, x, T) if needs_targets else None
        labels, mask = y, None
        if self.c.label_fraction < 1:
            labels, mask = losses.pseudo_labels(self.source.reference(idx, x), y, self.labeled[idx],
                                                self.c.pseudo_threshold)
        parts: dict[str, torch.Tensor] = {}
        if "soft" in self.active and targets is not None:
            parts["soft"] = losses.soft_loss(logits, targets, T)
        if "hard" in self.active:
            parts["hard"] = losses.hard_loss(logits, labels, mask)
        if "feature" in self.active and self.hints:
            parts["feature"] = _mean([losses.feature_loss(p(features[s]), p.target(
                self._batch(self._outputs.features(t), idx)), self.c.feature_loss) for s, t, p in self.hints])
        if "attention" in self.active and self.maps:
            parts["attention"] = _mean([losses.attention_loss(losses.attention_map(features[s]),
                                                              self._batch(self._outputs.attention(t), idx))
                                        for s, t in self.maps])
        if encoded and self.encoders is not None:
            s, t = encoded
            for name, loss in (("feature", self.encoders.hidden), ("attention", self.encoders.attention),
                               ("embedding", self.encoders.embedding)):
                if name in self.active:
                    parts[name] = loss(s, t)
        weights = self.weights()
        total = sum(weights[k] * v for k, v in parts.items())
        total = total + self.source.extra_loss(logits, labels, mask, T, weights)
        for k, v in parts.items():
            self._sums[k] += v.detach().double() * len(idx)
        self._count += len(idx)
        return total  # type: ignore[return-value]

    def _encode(self, idx: torch.Tensor, x: torch.Tensor) -> tuple[Encoded, Encoded] | None:
        """The student's pass with hidden states (and attentions), and the teacher's cached ones for the same batch
        (cut to the student's length), for transformer losses."""
        if self.encoders is None:  # built only when one of these losses is active
            return None
        attentions = "attention" in self.active
        student = self.student.encode(x, attentions)  # type: ignore[operator]
        hidden_layers, attention_layers = self.encoders.teacher_layers()
        hidden, probs = self._outputs.encoded(hidden_layers, attention_layers if attentions else [])
        n = student.mask.shape[1]
        teacher = Encoded(student.logits, {i: self._batch(h[:, :n], idx) for i, h in hidden.items()},
                          {i: self._batch(a[:, :n, :n], idx) for i, a in probs.items()}, student.mask)
        return student, teacher

    def _batch(self, outputs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The rows ``idx`` of cached teacher outputs (float16), as float32 targets on the training device."""
        return self.ctx.device.put(outputs[idx]).float()

    def before_epoch(self, epoch: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        measured = self._measure()
        if measured is not None:
            self.initial = self.initial or measured
            metrics = {"distill.agreement": measured.agreement, "distill.probe_kl": measured.kl}
        if self.c.weighting == "adaptive" and measured is not None:
            self.temperature, multipliers = self.controller.update(measured)
            self.multipliers = {k: multipliers[k] for k in self.active}
        else:
            gap = measured.kl / max(1e-12, self.initial.kl) if measured and self.initial else 1.0
            self.temperature = temperature_at(self.c.temperature_schedule, epoch, self.c.epochs, self.c.temperature,
                                              self.c.temperature_end, gap)
            if self.c.weighting == "dwa":
                self.multipliers = self.dwa.multipliers()
        weights = {f"distill.weight.{k}": w for k, w in self.weights().items()}
        return {**metrics, "distill.temperature": self.temperature, **weights}

    def after_epoch(self, epoch: int) -> dict[str, float]:
        means = {k: float(s) / max(1, self._count) for k, s in self._sums.items()}
        self.dwa.record({k: means.get(k, 0.0) for k in self.active})
        self._sums, self._count = defaultdict(float), 0
        return {f"distill.loss.{k}": v for k, v in means.items()}

    def _measure(self) -> Transfer | None:
        """The transfer on the probe, when the schedule needs it."""
        if self.probe is None:
            return None
        x = self.ctx.rows(self.probe)
        training = self.student.training
        self.student.eval()
        with torch.no_grad():
            measured = transfer(self.student(x), self.source.reference(self.probe, x))
        self.student.train(training)
        return measured

    def _pairs(self) -> tuple[list[tuple[str, str, Projection]], list[tuple[str, str]]]:
        c, teacher = self.c, self.ctx.teacher
        if teacher is None or not (c.feature_weight > 0 or c.attention_weight > 0):
            return [], []
        example = self.ctx.rows(torch.arange(1))
        hints = []
        if c.feature_weight > 0:
            for s, t in pair_layers(self.student, teacher, c.feature_layers, "feature_layers"):
                s_shape, t_shape = output_shapes(self.student, example, [s])[s], output_shapes(teacher, example, [t])[t]
                hints.append((s, t, Projection(s_shape, t_shape)))
        maps = []
        if c.attention_weight > 0:
            spatial_s, spatial_t = spatial_layers(self.student, example), spatial_layers(teacher, example)
            maps = pair_layers(self.student, teacher, c.attention_layers, "attention_layers", spatial_s, spatial_t)
        return hints, maps


def spatial_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The hint layers whose outputs are feature maps (C, H, W): where attention can be transferred."""
    shapes = output_shapes(model, example, hint_layers(model))
    return [name for name, s in shapes.items() if len(s) == 3]


def _encoders(c: DistillConfig, student: nn.Module, teacher: nn.Module | None) -> TransformerHints | None:
    """Hidden-state, attention and embedding transfer between a transformer student and teacher, if asked for."""
    wanted = c.feature_weight > 0 or c.attention_weight > 0 or c.embedding_weight > 0
    if not (wanted and c.method == "kd" and teacher is not None and is_encoder(student) and is_encoder(teacher)):
        return None
    return TransformerHints(student, teacher, c.feature_layers, c.attention_layers)


def _outputs(c: DistillConfig, ctx: TrialContext) -> TeacherOutputs | None:
    if c.method != "kd":
        return None
    if isinstance(ctx.teachers, TeacherOutputs):  # features and attention maps too
        return ctx.teachers
    if ctx.teachers is not None:
        raise ValueError(f"distill method kd reads the teachers' features and logits from a TeacherOutputs; the "
                         f"trial context holds a {type(ctx.teachers).__name__}")
    if ctx.teacher is None:
        raise ValueError("distill method kd needs a teacher in the trial context; declare a teacher, or use "
                         "method ema or dml")
    return TeacherOutputs([ctx.teacher], ctx.train_x)


def _source(c: DistillConfig, student: nn.Module, ctx: TrialContext, outputs: TeacherOutputs | None) -> Source:
    if c.method == "ema":
        return EmaTeacher(student, c.ema_decay)
    if c.method == "dml":
        return Peer(student, seed=ctx.seed + 1)
    if outputs is None:
        raise RuntimeError("method kd without teacher outputs")  # _outputs returns them for kd
    if c.ensemble != "none" and len(outputs) < 2:
        raise InvalidConfig("ensemble", "needs more than one teacher; declare the others under teacher.ensemble",
                            c.ensemble)
    return Teachers(outputs, c.ensemble)


def check_probe(c: DistillConfig, n: int) -> None:
    """The probe (held-out training samples that gap and adaptive measure transfer on) takes at most half of them."""
    if c.needs_probe and c.probe_size > n // 2:
        raise InvalidConfig("probe_size", f"must be at most half the {n} training samples (the training split)",
                            c.probe_size)


def _split_probe(c: DistillConfig, n: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if not c.needs_probe:
        return None, None
    check_probe(c, n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_PROBE_SEED))
    return order[c.probe_size:], order[:c.probe_size]


def _labeled(fraction: float, n: int) -> torch.Tensor:
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[torch.randperm(n, generator=torch.Generator().manual_seed(_LABEL_SEED))[:math.ceil(fraction * n)]] = True
    return labeled


def _mean(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).mean()
