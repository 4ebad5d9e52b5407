"""The teachers' outputs, computed once per study (and cached) and moved to the device once; the EMA update of a
student that teaches itself. (Which source a batch's soft labels come from is ``sources``.)"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch
from torch import nn

from squeezer.compressors.device import Device, running_on
from squeezer.compressors.distill.features import capture
from squeezer.compressors.distill.losses import attention_map
from squeezer.compressors.progress import Bar, note
from squeezer.compressors.training import by_length, inference_batch, predict


class OutputCache(Protocol):
    """Somewhere to keep a teacher's outputs between trials and processes (the search keeps them on disk)."""

    def get(self, teacher: int, name: str) -> torch.Tensor | None: ...

    def put(self, teacher: int, name: str, value: torch.Tensor) -> torch.Tensor | None:
        """Keep ``value``; may return the kept copy (e.g. memory-mapped from disk) to use instead of it."""
        ...


class Known(nn.Module):
    """A teacher known only by its logits on the training inputs, row by row — a model of another kind, such as a
    TF-IDF baseline's cross-fitted log-probabilities. It cannot run on other inputs; on inputs that repeat the
    training rows (augmented copies after the originals, block by block) its logits repeat with them."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits.float())  # its weights: what the output cache is keyed by

    def on(self, rows: int) -> torch.Tensor:
        """Its logits on ``rows`` inputs: the training rows, repeated as many times as they fit."""
        known = len(self.logits)
        if rows % known:
            raise ValueError(f"a teacher known by its outputs on {known} training rows has none for {rows} inputs")
        return self.logits.repeat(rows // known, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this teacher is known only by its outputs on the training inputs: it cannot run")


class TeacherOutputs:
    """The teachers' outputs on the training inputs, computed on first use, then kept in memory and in ``cache``.

    Teacher 0 is the main teacher; the others form the ensemble for multi-teacher distillation. Features and
    attention maps are kept in float16: they are targets, and a CNN's feature maps are large. Passes run on
    ``device`` (the teacher is moved there for them); what they compute is cached from the CPU and then kept on the
    device where it fits (``Device.keep``).
    """

    def __init__(self, teachers: Sequence[nn.Module], x: torch.Tensor, cache: OutputCache | None = None,
                 batch_size: int | None = None, device: Device | None = None) -> None:
        self.teachers, self.x, self.cache = list(teachers), x, cache
        self.device = device or Device()
        self.batch_size = batch_size or inference_batch(x)
        self._kept: dict[tuple[int, str], torch.Tensor] = {}
        self.forward_passes = 0  # full passes over x this process ran: 0 when everything came from the cache

    def __len__(self) -> int:
        return len(self.teachers)

    def use(self, device: Device) -> None:
        """Run passes and keep outputs on ``device`` from now on (a process's own device: a Ray worker's GPU)."""
        self.device = device
        for key, value in list(self._kept.items()):
            self._hold(key, value)

    def logits(self, teacher: int = 0) -> torch.Tensor:
        model = self.teachers[teacher]
        if isinstance(model, Known):
            return self._get(teacher, "logits", lambda: model.on(len(self.x)))
        return self._get(teacher, "logits", lambda: self._run(teacher, [])[0])

    def all_logits(self) -> list[torch.Tensor]:
        return [self.logits(i) for i in range(len(self.teachers))]

    def features(self, layer: str) -> torch.Tensor:
        """The main teacher's output at ``layer`` on every training input."""
        return self._get(0, f"features.{layer}", lambda: self._run(0, [layer])[1][layer].half())

    def attention(self, layer: str) -> torch.Tensor:
        """The main teacher's spatial attention map (channel mean of squares, unnormalised) at ``layer``."""
        return self._get(0, f"attention.{layer}", lambda: attention_map(self._run(0, [layer])[1][layer]).half())

    def encoded(self, hidden: Sequence[int], attention: Sequence[int]) -> tuple[dict[int, torch.Tensor],
                                                                                 dict[int, torch.Tensor]]:
        """A transformer teacher's hidden states and head-averaged attention distributions at the given layer
        numbers, on every training input, padded to the full length. The first call computes every layer in one
        pass (so later trials, whatever layers they map, find them in the cache)."""
        names = [f"hidden.{i}" for i in hidden] + [f"attention_probs.{i}" for i in attention]
        for name in names:
            if (0, name) not in self._kept and self.cache and (value := self.cache.get(0, name)) is not None:
                self._hold((0, name), value)
        if any((0, name) not in self._kept for name in names):
            for name, value in self._encode_all().items():
                self._keep(0, name, value)
        values = {name: self._kept[(0, name)] for name in names}
        return ({i: values[f"hidden.{i}"] for i in hidden}, {i: values[f"attention_probs.{i}"] for i in attention})

    @torch.no_grad()
    def _encode_all(self) -> dict[str, torch.Tensor]:
        model: Any = self.teachers[0].eval()  # an encoder: ``pad_id`` and ``encode`` (see distill.transformer)
        with running_on(model, self.device.where):
            return self._encode_every_layer(model)

    def _encode_every_layer(self, model: Any) -> dict[str, torch.Tensor]:
        note(f"teacher 0: computing hidden states and attentions of every layer on {len(self.x)} training texts "
             "(once: they are cached)")
        order = by_length(self.x, model.pad_id)
        n, length = self.x.shape
        found: dict[str, torch.Tensor] = {}
        with Bar("teacher 0 outputs", total=n, unit="text") as bar:
            for chunk in order.split(256):
                out = model.encode(self.device.put(self.x[chunk]), attentions=True)
                cut = out.mask.shape[1]
                for i, h in out.hidden.items():
                    target = found.setdefault(f"hidden.{i}", torch.zeros(n, length, h.shape[-1], dtype=torch.float16))
                    target[chunk, :cut] = h.half().cpu()
                for i, a in out.attentions.items():
                    target = found.setdefault(f"attention_probs.{i}",
                                              torch.zeros(n, length, length, dtype=torch.float16))
                    target[chunk, :cut, :cut] = a.half().cpu()
                bar.update(len(chunk))
        self.forward_passes += 1
        return found

    def prefetch(self, features: Sequence[str] = (), attention: Sequence[str] = ()) -> None:
        """Make the main teacher's named features and attention maps available, computing all the missing ones in
        one pass over the data."""
        wanted = {**{f"features.{n}": n for n in features}, **{f"attention.{n}": n for n in attention}}
        missing = {}
        for name, layer in wanted.items():
            value = self.cache.get(0, name) if self.cache and (0, name) not in self._kept else None
            if value is not None:
                self._hold((0, name), value)
            elif (0, name) not in self._kept:
                missing[name] = layer
        if not missing:
            return
        _, found = self._run(0, sorted(set(missing.values())))
        for name, layer in missing.items():
            self._keep(0, name, (attention_map(found[layer]) if name.startswith("attention.") else found[layer]).half())

    def _get(self, teacher: int, name: str, compute) -> torch.Tensor:  # noqa: ANN001 - a thunk
        key = (teacher, name)
        if key not in self._kept:
            value = self.cache.get(teacher, name) if self.cache else None
            return self._keep(teacher, name, compute()) if value is None else self._hold(key, value)
        return self._kept[key]

    def _keep(self, teacher: int, name: str, value: torch.Tensor) -> torch.Tensor:
        """Keep a computed output: the cache's copy of it where there is one (memory-mapped: the computed tensor
        is freed)."""
        kept = self.cache.put(teacher, name, value) if self.cache else None
        return self._hold((teacher, name), value if kept is None else kept)

    def _hold(self, key: tuple[int, str], value: torch.Tensor) -> torch.Tensor:
        """Hold an output from now on: on the device where it fits (``Device.keep``, decided once), else where it
        is."""
        self._kept[key] = self.device.keep(value)
        return self._kept[key]

    @torch.no_grad()
    def _run(self, teacher: int, layers: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The teacher's logits and its outputs at ``layers`` on every training input, on the CPU (a pass on the
        device)."""
        with running_on(self.teachers[teacher].eval(), self.device.where) as model:
            return self._pass(teacher, model, layers)

    def _pass(self, teacher: int, model: nn.Module, layers: list[str]) -> tuple[torch.Tensor,
                                                                                 dict[str, torch.Tensor]]:
        note(f"teacher {teacher}: computing outputs {['logits', *layers]} on {len(self.x)} training samples "
             "(once: they are cached)")
        with Bar(f"teacher {teacher} outputs", total=len(self.x), unit="sample") as bar:
            if not layers:  # logits alone: ``predict`` also orders texts by length, so batches carry little padding
                self.forward_passes += 1
                return predict(model, self.x, self.batch_size, step=bar.update), {}
            logits, found = [], {name: [] for name in layers}  # type: ignore[var-annotated]
            with capture(model, layers) as out:
                for chunk in self.x.split(self.batch_size):
                    logits.append(model(self.device.put(chunk)).float().cpu())
                    for name in layers:
                        found[name].append(out[name].float().cpu())
                    bar.update(len(chunk))
        self.forward_passes += 1
        return torch.cat(logits), {name: torch.cat(parts) for name, parts in found.items()}


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``θ_ema ← decay·θ_ema + (1 − decay)·θ``, parameter by parameter; buffers (BatchNorm statistics) are copied."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)
    for mine, theirs in zip(ema.buffers(), model.buffers(), strict=True):
        mine.copy_(theirs)
