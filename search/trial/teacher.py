"""The teacher: loaded from a user's checkpoint, or trained once from the config and cached on disk."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from squeezer.compressors.base import TrialContext
from squeezer.compressors.device import Device
from squeezer.compressors.progress import Bar, note
from squeezer.compressors.training import Optim, fit, hard_labels
from squeezer.search import models
from squeezer.search.models import hub, text
from squeezer.search.models.user import source_digest
from squeezer.search.data import Splits
from squeezer.search.defaults import cache_dir
from squeezer.search.config.teacher_section import TeacherSpec
from squeezer.search.errors import ConfigError


def get_teacher(spec: TeacherSpec, splits: Splits, seed: int, batch_size: int,
                key: str = "teacher", device: Device | None = None) -> nn.Module:
    """The teacher in eval mode, on the CPU: from ``spec.path``, else from the cache, else trained now (on
    ``device``) and cached. ``key``: the config section it comes from, for errors."""
    torch.manual_seed(seed)  # the initial weights too depend only on the cache key
    model = models.build(spec.model, splits.input_shape, splits.num_classes, key="teacher.arch", tokens=splits.tokens)
    if spec.path is not None:
        return _load(model, spec.path, f"{key}.path")
    if spec.family == "program":  # trained where it was exported: its weights are in the file
        return model.eval()
    head = {"hf": hub.SEQUENCE_HEAD, "hf_image": hub.IMAGE_HEAD}.get(spec.family)
    name = spec.hub_dir
    labels = hub.fine_tuned_labels(text.model_dir(name), splits.num_classes, head) if name and head else None
    if labels is not None:  # a classifier for these classes already: used as is, unless epochs asks for more
        how = hub.align_classes(model, labels, splits.classes, name)
        note(f"teacher: {name} is fine-tuned for the data's {len(labels)} classes; {how}")
        if spec.epochs is None:
            return model.eval()
    path = cache_dir() / "teachers" / f"{teacher_key(spec, splits, seed, batch_size)}.pt"
    if path.is_file():
        note(f"teacher: loaded from cache {path}")
        return _load(model, path, f"{key} (cached)")
    train(model, spec, splits, seed, batch_size, device or Device()).cpu()
    save_atomically(model.state_dict(), path)
    return model.eval()


def teacher_tokenizer(spec: TeacherSpec) -> Any:
    """The tokenizer of a Hugging Face teacher (``family: hf``), which text data is tokenized with; else None."""
    return text.tokenizer(spec.hub_dir) if spec.family == "hf" else None


def teacher_key(spec: TeacherSpec, splits: Splits, seed: int, batch_size: int) -> str:
    """The cache key: everything the trained weights depend on (settings, training data, seed, batch size)."""
    settings = json.dumps(spec.settings(), sort_keys=True)
    if spec.family == "factory":  # the user's code may change under the same name
        settings += source_digest(str(spec.arch.get("model", "")))
    return hashlib.sha256(f"{settings}|{splits.fingerprint()}|{seed}|{batch_size}".encode()).hexdigest()[:20]


def train(model: nn.Module, spec: TeacherSpec, splits: Splits, seed: int, batch_size: int,
          device: Device | None = None) -> nn.Module:
    """Train the teacher on hard labels on ``device`` (the data moved there once, where it fits): a live bar of its
    steps, and one line per epoch."""
    device = device or Device()
    epochs = spec.epochs or 10
    steps = epochs * math.ceil(len(splits.train_x) / batch_size)
    with Bar("teacher training", total=steps, unit="steps") as bar:
        def report(step: int, metrics: Mapping[str, float]) -> None:
            line = (f"epoch {step + 1}/{epochs} loss={metrics['teacher.loss']:.4f} "
                    f"val_accuracy={metrics['teacher.val_accuracy']:.4f}")
            bar.update(0, note=line)
            note(f"teacher: {line}")

        torch.manual_seed(seed)
        data = (device.keep(t) for t in (splits.train_x, splits.train_y, splits.val_x, splits.val_y))
        ctx = TrialContext(*data, seed=seed, batch_size=batch_size, report=report,
                           augment=spec.augment, device=device)
        return fit(model, ctx, hard_labels(model, ctx), Optim(epochs, spec.lr or 1e-3), stage="teacher",
                   after_step=bar.update)


def ensemble_specs(spec: TeacherSpec, seed: int) -> list[tuple[TeacherSpec, int]]:
    """The main teacher and each ``teacher.ensemble`` member (whole specs: they inherited what they do not set when
    the file was read), as (spec, seed) pairs; member i's seed defaults to the study seed + i + 1, so ``ensemble:
    [{}]`` is the same teacher trained from another seed."""
    members = [(member, seed + i + 1 if member.seed is None else member.seed) for i, member in enumerate(spec.ensemble)]
    return [(replace(spec, ensemble=()), seed), *members]


class DiskCache:
    """Teacher outputs on disk under ``<cache>/outputs/<teacher digest>-<data digest>/<name>.pt``.

    Keyed by the teacher's weights and the data, so resumed studies, parallel workers and other studies with the
    same teacher reuse them. Written atomically: a reader never sees half a file. Read memory-mapped: only the rows
    a batch indexes are read from disk.
    """

    def __init__(self, teachers: list[nn.Module], data_fingerprint: str) -> None:
        self.dirs = [cache_dir() / "outputs" / f"{weights_digest(t)}-{data_fingerprint}" for t in teachers]

    def get(self, teacher: int, name: str) -> torch.Tensor | None:
        path = self.dirs[teacher] / f"{name}.pt"
        if not path.is_file():
            return None
        note(f"teacher {teacher}: {name} loaded from cache {path}")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)

    def put(self, teacher: int, name: str, value: torch.Tensor) -> torch.Tensor:
        """Write ``value``; returns it memory-mapped from the file."""
        path = self.dirs[teacher] / f"{name}.pt"
        save_atomically(value, path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def weights_digest(model: nn.Module) -> str:
    """A short hash of a model's weights (and buffers)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def check_checkpoint(spec: TeacherSpec, splits: Splits, key: str = "teacher") -> None:
    """Refuse a teacher checkpoint that does not load into the declared family/arch, before any teacher trains
    (its model is built on the meta device: nothing is allocated)."""
    if spec.path is None:
        return
    with torch.device("meta"):
        model = models.build(spec.model, splits.input_shape, splits.num_classes, key=f"{key}.arch",
                             tokens=splits.tokens)
    _fits(model, read_state_dict(spec.path, f"{key}.path"), f"{key}.path", spec.path)


def _load(model: nn.Module, path: Path, key: str = "teacher.path") -> nn.Module:
    state = read_state_dict(path, key)
    _fits(model, state, key, path)
    model.load_state_dict(state)
    return model.eval()


def _fits(model: nn.Module, state: dict[str, torch.Tensor], key: str, path: Path) -> None:
    mine = model.state_dict()
    missing, unexpected = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    if missing or unexpected:
        raise ConfigError(key, "does not fit the declared family/arch: " + "; ".join(
            f"{what} keys {names[:3]}{' ...' if len(names) > 3 else ''} ({len(names)})"
            for what, names in (("missing", missing), ("unexpected", unexpected)) if names), str(path))
    wrong = next((k for k in mine if tuple(state[k].shape) != tuple(mine[k].shape)), None)
    if wrong is not None:
        raise ConfigError(key, f"does not fit the declared family/arch: {wrong} has shape {list(state[wrong].shape)}"
                          f", the model's is {list(mine[wrong].shape)}", str(path))


def read_state_dict(path: Path, key: str) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save(model.state_dict(), path)``, loaded without running pickled code
    (``weights_only``). A whole pickled model, an empty, truncated or foreign file is one ``ConfigError``."""
    if path.stat().st_size == 0:
        raise ConfigError(key, "is an empty file; save the weights with torch.save(model.state_dict(), PATH)",
                          str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever the file holds, it is the user's input
        message = str(err)
        if "Weights only load failed" in message and ("GLOBAL" in message or "Unsupported" in message):
            rule = ("holds a whole pickled model (torch.save(model)), which cannot be loaded safely: loading it runs "
                    "code from the file; save its weights instead: torch.save(model.state_dict(), PATH)")
        elif isinstance(err, EOFError) or "central directory" in message or "truncated" in message:
            rule = "is truncated or corrupt (not a whole torch.save file)"
        else:
            rule = "is not a PyTorch checkpoint; save the weights with torch.save(model.state_dict(), PATH)"
        raise ConfigError(key, rule, str(path)) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ConfigError(key, "must hold a state dict (names to tensors), as torch.save(model.state_dict(), PATH) "
                          f"writes; it holds a {type(state).__name__}", str(path))
    return state


def save_atomically(state: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then renamed: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        torch.save(state, tmp.name)
    os.replace(tmp.name, path)
