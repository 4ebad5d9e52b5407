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
import torch.nn.functional as F
from torch import nn

from squeezer.compressors.base import TrialContext
from squeezer.compressors.training import fit, predict
from squeezer.search import models
from squeezer.search.data import Splits
from squeezer.search.errors import ConfigError


def cache_dir() -> Path:
    """Where trained teachers are kept: ``$SQUEEZER_CACHE`` or ``~/.cache/squeezer``."""
    return Path(os.environ.get("SQUEEZER_CACHE", Path.home() / ".cache" / "squeezer"))


def get_teacher(spec: dict[str, Any], splits: Splits, seed: int, batch_size: int) -> nn.Module:
    """The teacher in eval mode: from ``spec['path']``, else from the cache, else trained now and cached."""
    torch.manual_seed(seed)  # the initial weights too depend only on the cache key
    model = models.build({"family": spec["family"], **spec["arch"]}, splits.input_shape, splits.num_classes,
                         key="teacher.arch")
    if spec.get("path"):
        return _load(model, Path(spec["path"]))
    path = cache_dir() / "teachers" / f"{teacher_key(spec, splits, seed, batch_size)}.pt"
    if path.is_file():
        print(f"teacher: loaded from cache {path}", file=sys.stderr)
        return _load(model, path)
    train(model, spec, splits, seed, batch_size)
    _save_atomically(model.state_dict(), path)
    return model.eval()


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
    loss = lambda s, y, t: F.cross_entropy(s, y)  # noqa: E731
    return fit(model, ctx, loss, epochs=epochs, lr=float(spec.get("lr", 1e-3)), stage="teacher")


def teacher_logits(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The teacher's logits on ``x``, computed once per study and shared by every trial."""
    return predict(teacher, x)


def _load(model: nn.Module, path: Path) -> nn.Module:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise ConfigError("teacher.path", "could not load it as a state dict of the declared family/arch "
                          f"({str(err).splitlines()[0]})", str(path)) from None
    return model.eval()


def _save_atomically(state: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        torch.save(state, tmp.name)
    os.replace(tmp.name, path)
