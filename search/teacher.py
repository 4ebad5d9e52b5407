"""The teacher: loaded from a user's checkpoint, or trained once from the config and cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from squeezer.compressors.base import TrialContext
from squeezer.compressors.training import Optim, fit, hard_labels
from squeezer.search import models
from squeezer.search.models import text
from squeezer.search.data import Splits
from squeezer.search.errors import ConfigError


def cache_dir() -> Path:
    """Where trained teachers are kept: ``$SQUEEZER_CACHE`` or ``~/.cache/squeezer``."""
    return Path(os.environ.get("SQUEEZER_CACHE", Path.home() / ".cache" / "squeezer"))


def get_teacher(spec: dict[str, Any], splits: Splits, seed: int, batch_size: int) -> nn.Module:
    """The teacher in eval mode: from ``spec['path']``, else from the cache, else trained now and cached."""
    torch.manual_seed(seed)  # the initial weights too depend only on the cache key
    model = models.build({"family": spec["family"], **spec["arch"]}, splits.input_shape, splits.num_classes,
                         key="teacher.arch", tokens=splits.tokens)
    if spec.get("path"):
        return _load(model, Path(spec["path"]))
    path = cache_dir() / "teachers" / f"{teacher_key(spec, splits, seed, batch_size)}.pt"
    if path.is_file():
        print(f"teacher: loaded from cache {path}", file=sys.stderr)
        return _load(model, path)
    train(model, spec, splits, seed, batch_size)
    _save_atomically(model.state_dict(), path)
    return model.eval()


def teacher_tokenizer(spec: Mapping[str, Any]) -> Any:
    """The tokenizer of a Hugging Face teacher (``family: hf``), which text data is tokenized with; else None."""
    if spec.get("family") != "hf":
        return None
    return text.tokenizer((spec.get("arch") or {}).get("model", text.DEFAULT_MODEL))


def teacher_key(spec: dict[str, Any], splits: Splits, seed: int, batch_size: int) -> str:
    """The cache key: everything the trained weights depend on (settings, training data, seed, batch size)."""
    settings = json.dumps({k: v for k, v in spec.items() if k != "path"}, sort_keys=True)
    return hashlib.sha256(f"{settings}|{splits.fingerprint()}|{seed}|{batch_size}".encode()).hexdigest()[:20]


def train(model: nn.Module, spec: dict[str, Any], splits: Splits, seed: int, batch_size: int) -> nn.Module:
    """Train the teacher on hard labels, printing one line per epoch."""
    epochs = int(spec.get("epochs", 10))

    def report(step: int, metrics: Mapping[str, float]) -> None:
        print(f"teacher: epoch {step + 1}/{epochs} loss={metrics['teacher.loss']:.4f} "
              f"val_accuracy={metrics['teacher.val_accuracy']:.4f}", file=sys.stderr, flush=True)

    torch.manual_seed(seed)
    ctx = TrialContext(splits.train_x, splits.train_y, splits.val_x, splits.val_y, seed=seed,
                       batch_size=batch_size, report=report)
    return fit(model, ctx, hard_labels(model, ctx), Optim(epochs, float(spec.get("lr", 1e-3))), stage="teacher")


def ensemble_specs(spec: dict[str, Any], seed: int) -> list[tuple[dict[str, Any], int]]:
    """The main teacher and each ``teacher.ensemble`` member, as (spec, seed) pairs.

    A member inherits the main teacher's settings it does not give, except its checkpoint (and its arch when the
    family differs); member i's seed defaults to the study seed + i + 1, so ``ensemble: [{}]`` is the same teacher
    trained from another seed.
    """
    main = {k: v for k, v in spec.items() if k != "ensemble"}
    inherited = {k: v for k, v in main.items() if k != "path"}
    members = []
    for i, member in enumerate(spec.get("ensemble") or []):
        own = {k: v for k, v in member.items() if k != "seed"}
        base = inherited if own.get("family", main["family"]) == main["family"] else {"arch": {}}
        members.append(({**base, **own}, int(member.get("seed", seed + i + 1))))
    return [(main, seed), *members]


class DiskCache:
    """Teacher outputs on disk under ``<cache>/outputs/<teacher digest>-<data digest>/<name>.pt``.

    Keyed by the teacher's weights and the data, so resumed studies, parallel workers and other studies with the
    same teacher reuse them. Written atomically: a reader never sees half a file.
    """

    def __init__(self, teachers: list[nn.Module], data_fingerprint: str) -> None:
        self.dirs = [cache_dir() / "outputs" / f"{weights_digest(t)}-{data_fingerprint}" for t in teachers]

    def get(self, teacher: int, name: str) -> torch.Tensor | None:
        path = self.dirs[teacher] / f"{name}.pt"
        if not path.is_file():
            return None
        print(f"teacher {teacher}: {name} loaded from cache {path}", file=sys.stderr, flush=True)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)

    def put(self, teacher: int, name: str, value: torch.Tensor) -> None:
        _save_atomically(value, self.dirs[teacher] / f"{name}.pt")


def weights_digest(model: nn.Module) -> str:
    """A short hash of a model's weights (and buffers)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def _load(model: nn.Module, path: Path) -> nn.Module:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise ConfigError("teacher.path", "could not load it as a state dict of the declared family/arch "
                          f"({str(err).splitlines()[0]})", str(path)) from None
    return model.eval()


def _save_atomically(state: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        torch.save(state, tmp.name)
    os.replace(tmp.name, path)
