"""``lm_distill``: train a causal LM student on its teacher's next-token distributions.

Per batch, one of three sources (drawn with the configured fractions):

- the training text: the teacher's distribution at every position (its cached top-k, or the teacher live), and the
  next-token cross-entropy on the text itself (``hard_weight``);
- sequence-level (``sequence_fraction``): the teacher's own continuations of training prompts, generated once per
  study (Kim & Rush 2016), with the teacher's distribution on them;
- on-policy (``on_policy_fraction``, GKD's lambda): the student continues a training prompt by sampling, and the teacher
  scores what the student wrote (Agarwal et al. 2024); the loss is on the generated tokens.

A prompt is the prompt of prompt/response pairs (the tokens before the response); plain text has none, and a block's
first 16 tokens stand for one.

The token-level divergence is ``loss`` (forward KL, reverse KL, generalised JSD with ``beta``, skew KL with
``alpha``) at ``temperature`` (scaled by T^2), weighted ``soft_weight``. ``hidden_weight`` matches the student's
layer outputs to the teacher's kept layers (through a learned projection where the widths differ).

Adaptive: ``token_temperature`` sets each token's temperature from the teacher's entropy there (peaked tokens are
softened, flat ones sharpened, within 0.5–2x of ``temperature``); ``weighting: dwa`` moves the loss weights by Dynamic
Weight Average between evaluations; ``temperature_schedule`` anneals T to ``temperature_end``."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from squeezer.compressors.base import Compressor, CompressorConfig, InvalidConfig, check, is_number
from squeezer.compressors.device import trim_heap
from squeezer.compressors.distill.schedules import DynamicWeightAverage, temperature_at
from squeezer.compressors.lm.context import LmContext, TopK, continue_prompts, perplexity, prompt_lengths
from squeezer.compressors.lm.losses import DIVERGENCES, LOSSES, masked_mean, next_token_loss, on_support
from squeezer.compressors.progress import Bar
from squeezer.compressors.training import Plateau
from squeezer.compressors.registry import register

TEACHER_OUTPUTS = ("cached", "live")
SCHEDULES = ("constant", "linear", "cosine")
WEIGHTINGS = ("fixed", "dwa")
GENERATED = 32  # tokens the student writes in an on-policy batch


@dataclass(frozen=True)
class LmDistillConfig(CompressorConfig):
    loss: str = "forward_kl"
    temperature: float = 1.0
    beta: float = 0.5                 # jsd: the mixture's share of the teacher
    alpha: float = 0.1                # skew_kl: the mixture's share of the teacher
    soft_weight: float = 1.0
    hard_weight: float = 0.0          # next-token cross-entropy on the text
    hidden_weight: float = 0.0        # the student's layer outputs against the teacher's kept layers
    sequence_fraction: float = 0.0    # batches of the teacher's own continuations
    on_policy_fraction: float = 0.0   # batches the student writes and the teacher scores
    token_temperature: bool = False
    temperature_schedule: str = "constant"
    temperature_end: float = 1.0
    weighting: str = "fixed"
    steps: int = 200
    lr: float = 1e-3
    warmup_steps: int = 20
    eval_every: int = 50
    patience: int = 0                 # > 0: stop once val perplexity has not improved for this many evaluations
    teacher_outputs: str = "cached"   # the teacher's top-k, computed once per study; or the teacher run live

    def validate(self) -> None:
        for name, allowed in (("loss", LOSSES), ("teacher_outputs", TEACHER_OUTPUTS),
                              ("temperature_schedule", SCHEDULES), ("weighting", WEIGHTINGS)):
            check(getattr(self, name) in allowed, name, f"must be one of {list(allowed)}", getattr(self, name))
        for name in ("temperature", "temperature_end", "lr"):
            check(is_number(getattr(self, name)) and getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        for name in ("beta", "alpha", "sequence_fraction", "on_policy_fraction"):
            check(is_number(getattr(self, name)) and 0 <= getattr(self, name) <= 1, name, "must be in [0, 1]",
                  getattr(self, name))
        check(self.sequence_fraction + self.on_policy_fraction <= 1, "sequence_fraction",
              "plus on_policy_fraction must be at most 1", self.sequence_fraction + self.on_policy_fraction)
        for name in ("soft_weight", "hard_weight", "hidden_weight"):
            value = getattr(self, name)
            check(is_number(value) and value >= 0, name, "must be >= 0", value)
        check(self.soft_weight + self.hard_weight + self.hidden_weight > 0, "soft_weight",
              "at least one loss weight (soft, hard, hidden) must be > 0", self.soft_weight)
        check(self.on_policy_fraction == 0 or self.soft_weight > 0, "on_policy_fraction",
              "needs soft_weight > 0: what the student writes is scored by the teacher's distribution",
              self.on_policy_fraction)
        check(self.sequence_fraction == 0 or self.soft_weight + self.hard_weight > 0, "sequence_fraction",
              "needs soft_weight or hard_weight > 0: the teacher's continuations are learnt by one of them",
              self.sequence_fraction)
        for name, low in (("steps", 0), ("warmup_steps", 0), ("eval_every", 1), ("patience", 0)):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool) and value >= low, name,
                  f"must be an integer >= {low}", value)


@register
class LmDistill(Compressor):
    name = "lm_distill"
    Config = LmDistillConfig
    task = "language_model"
    training_fields = ("steps",)

    searched: ClassVar[dict[str, Any]] = {
        "loss": {"choice": list(LOSSES)}, "temperature": {"float": [0.5, 4.0], "log": True},
        "beta": {"float": [0.1, 0.9]}, "alpha": {"float": [0.0, 0.5]},
        "hard_weight": {"float": [0.0, 1.0]}}

    def untrained(self) -> None:
        return None  # distillation changes weights only: the untrained student's size and speed are its own

    def label(self) -> str:
        c = self.config
        return f"{c.loss} T{c.temperature:.1f}" if c.soft_weight > 0 else "no teacher"

    def check_models(self, student: nn.Module, teachers: Any, example: torch.Tensor) -> None:
        if self.config.soft_weight > 0 and not teachers:
            raise InvalidConfig("soft_weight", "needs a teacher", self.config.soft_weight)

    def apply(self, model: nn.Module, ctx: LmContext) -> nn.Module:  # type: ignore[override]
        c = self.config
        student = copy.deepcopy(model).to(ctx.device.where)
        if c.steps == 0:
            return student
        teacher = ctx.teacher
        needs_live = c.teacher_outputs == "live" or ctx.top_k is None or c.hidden_weight > 0
        if (c.soft_weight > 0 or c.hidden_weight > 0 or c.on_policy_fraction > 0) and teacher is None:
            raise InvalidConfig("soft_weight", "needs the teacher", c.soft_weight)
        projection = _projection(student, teacher) if c.hidden_weight > 0 else None
        params = list(student.parameters()) + ([] if projection is None else list(projection.parameters()))
        optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=0.0)
        scaler = ctx.device.scaler()  # fp16 scales the loss so that small gradients survive; a no-op otherwise
        rng = ctx.generator(7)
        dwa = DynamicWeightAverage(["soft", "hard"], 2.0) if c.weighting == "dwa" else None
        multipliers, running = {"soft": 1.0, "hard": 1.0}, {"soft": [], "hard": []}
        sequences = ctx.sequences() if c.sequence_fraction > 0 and ctx.sequences is not None else None
        if c.sequence_fraction > 0 and sequences is None:
            raise InvalidConfig("sequence_fraction", "needs the teacher's continuations (a study with a teacher)",
                                c.sequence_fraction)
        student.train()
        plateau = Plateau(c.patience, higher_is_better=False)  # the best evaluation's weights, where it stops early
        with Bar("distilling", total=c.steps, unit="steps") as bar:
            for step in range(c.steps):
                lr = c.lr * min(1.0, (step + 1) / max(1, c.warmup_steps)) * \
                    0.5 * (1 + math.cos(math.pi * step / c.steps))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                temperature = temperature_at(c.temperature_schedule, step, c.steps, c.temperature,
                                             c.temperature_end)
                draw = float(torch.rand(1, generator=rng))
                kind = "on_policy" if draw < c.on_policy_fraction else \
                    "sequence" if draw < c.on_policy_fraction + c.sequence_fraction else "data"
                with ctx.device.autocast():
                    parts = self._batch(student, teacher, ctx, kind, sequences, rng, temperature, needs_live,
                                        projection)
                total = c.soft_weight * multipliers["soft"] * parts["soft"] + \
                    c.hard_weight * multipliers["hard"] * parts["hard"] + c.hidden_weight * parts["hidden"]
                optimizer.zero_grad(set_to_none=True)
                if total.requires_grad:  # a batch with no loss that applies to it (a zero weight) is skipped
                    scaler.scale(total).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    scaler.step(optimizer)
                    scaler.update()
                for name in running:
                    running[name].append(float(parts[name].detach()))
                bar.update(1)
                if step % 16 == 0:
                    trim_heap()  # the batches' tensors differ in size: a fragmented heap grows (device.trim_heap)
                if (step + 1) % c.eval_every == 0 or step + 1 == c.steps:
                    val = perplexity(student, ctx.val[:64], None if ctx.val_mask is None else ctx.val_mask[:64],
                                     device=ctx.device)
                    means = {k: sum(v) / max(len(v), 1) for k, v in running.items()}
                    if dwa is not None:
                        dwa.record(means)
                        multipliers = dwa.multipliers()
                    running = {k: [] for k in running}
                    ctx.report(step // c.eval_every, {f"{self.name}.val_perplexity": val,
                                                      f"{self.name}.loss": float(total.detach()),
                                                      f"{self.name}.temperature": temperature})
                    bar.update(0, note=f"step {step + 1}/{c.steps} val_perplexity={val:.2f}")
                    if not math.isfinite(val) or plateau.stops(student, val):
                        break
        return plateau.best(student).eval()

    def _batch(self, student: nn.Module, teacher: nn.Module | None, ctx: LmContext, kind: str, sequences: Any,
               rng: torch.Generator, temperature: float, live: bool,
               projection: nn.Module | None) -> dict[str, torch.Tensor]:
        """The soft, hard and hidden losses of one batch of ``kind``."""
        c, device = self.config, ctx.device
        zero = torch.zeros((), device=device.where)
        top_k = None
        if kind == "sequence":
            idx = torch.randint(len(sequences.ids), (ctx.batch_size,), generator=rng)
            ids, mask = device.put(sequences.ids[idx]), device.put(sequences.mask[idx])
            top_k = _rows(sequences.top_k, idx, device)
        else:
            idx = torch.randint(len(ctx.train), (ctx.batch_size,), generator=rng)
            ids = device.put(ctx.train[idx])
            mask = None if ctx.train_mask is None else device.put(ctx.train_mask[idx])
            if kind == "on_policy":
                ids, mask = _student_writes(student, ids, prompt_lengths(ids, mask, ctx.prompt_tokens), ctx.pad_id,
                                            rng)
            elif not live:
                top_k = _rows(ctx.top_k, idx, device)
        wants_hidden = projection is not None and kind != "sequence"
        out = student(input_ids=ids, output_hidden_states=wants_hidden)
        logits = out.logits
        parts = {"soft": zero, "hard": zero, "hidden": zero}
        if c.hard_weight > 0 and kind != "on_policy":
            parts["hard"] = next_token_loss(logits, ids, mask)
        if c.soft_weight > 0 or wants_hidden:
            t_hidden = None
            if top_k is None:
                with torch.no_grad():
                    t_out = teacher(input_ids=ids, output_hidden_states=wants_hidden)
                teacher_logits, indices, t_hidden = t_out.logits, None, t_out.hidden_states if wants_hidden else None
                rest = None
            else:
                teacher_logits, indices, rest = top_k
            if c.soft_weight > 0:
                t = temperature
                if c.token_temperature:
                    t = _token_temperatures(teacher_logits.float(), temperature)
                t_log, s_log = on_support(logits, teacher_logits, indices, t, rest)
                per_token = DIVERGENCES[c.loss](t_log, s_log, beta=c.beta, alpha=c.alpha)
                scale = t ** 2 if isinstance(t, float) else (t.squeeze(-1) ** 2)
                parts["soft"] = masked_mean(per_token * scale, None if mask is None else _predicting(mask))
            if wants_hidden and t_hidden is not None:
                parts["hidden"] = _hidden_loss(out.hidden_states, t_hidden, student, projection)
        return parts


def _rows(top_k: TopK, idx: torch.Tensor, device: Any) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
    """The cached teacher outputs of the blocks ``idx``, on the device: top-k values, ids, the rest's statistics."""
    part = top_k.rows(idx)
    rest = None if part.rest is None else (device.put(part.rest), device.put(part.rest_mean))
    return device.put(part.values), device.put(part.indices), rest


def _predicting(mask: torch.Tensor) -> torch.Tensor:
    """The positions whose next token counts (``mask`` marks the tokens that count): each is one before."""
    shifted = torch.zeros_like(mask)
    shifted[:, :-1] = mask[:, 1:]
    return shifted


def _student_writes(student: nn.Module, ids: torch.Tensor, lengths: torch.Tensor, pad_id: int,
                    rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's sampled continuation (``GENERATED`` tokens) of each row's prompt (``lengths``), and the mask of
    the generated positions."""
    seed = int(torch.randint(2**31 - 1, (1,), generator=rng))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student.eval()
        out, mask = continue_prompts(student, ids, lengths.to(ids.device), lambda length: GENERATED, pad_id,
                                     do_sample=True, top_k=0, top_p=1.0, temperature=1.0)
        student.train()
    return out, mask


def _token_temperatures(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Each token's temperature ``[..., 1]``: ``temperature`` times sqrt(mean entropy / this token's), within
    0.5–2x: where the teacher is sure, its distribution is softened to show its other choices."""
    log_p = teacher_logits.log_softmax(-1)
    entropy = -(log_p.exp() * log_p).sum(-1, keepdim=True).clamp_min(1e-4)
    return temperature * (entropy.mean() / entropy).sqrt().clamp(0.5, 2.0)


def _projection(student: nn.Module, teacher: nn.Module | None) -> nn.Module | None:
    if teacher is None:
        return None
    s, t = student.config.hidden_size, teacher.config.hidden_size
    device = next(student.parameters()).device
    return nn.Identity() if s == t else nn.Linear(s, t, bias=False).to(device)


def _hidden_loss(student_states: tuple, teacher_states: tuple, student: nn.Module,
                 projection: nn.Module) -> torch.Tensor:
    """Mean squared error between each student layer's output and its teacher layer's (the kept layer the student
    says it came from, else the one at the same relative depth), each normalised by its RMS."""
    layers = len(student_states) - 1
    kept = getattr(student.config, "squeezer_layer_map", None) or \
        [round((i + 1) * (len(teacher_states) - 1) / layers) - 1 for i in range(layers)]
    loss = torch.zeros((), device=student_states[-1].device)
    for i, source in enumerate(kept[:layers - 1]):  # the last state is after the final norm: not matched
        s, t = projection(student_states[i + 1].float()), teacher_states[source + 1].float()
        loss = loss + nn.functional.mse_loss(s / s.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt(),
                                             t / t.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())
    return loss / max(1, layers - 1)


__all__ = ["LmDistill", "LmDistillConfig", "TEACHER_OUTPUTS"]
