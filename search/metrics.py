"""Measure a compressed model as it will be used: accuracy, real bytes on disk, real latency."""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from squeezer.compressors.training import accuracy
from squeezer.search.config import MeasureSettings

_NOT_WEIGHTS = ("running_mean", "running_var", "num_batches_tracked", "scale", "zero_point")


def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: MeasureSettings,
            save_to: Path, pad_id: int | None = None) -> dict[str, float]:
    """All trial metrics; the model's state dict is saved to ``save_to`` and its byte count is the size. For token
    inputs (``pad_id`` given), speed is measured at the full sequence length."""
    timed = x if pad_id is None else full_length(x[: settings.batch], pad_id)
    latency = latency_ms(model, timed[:1], settings)
    return {
        "accuracy": accuracy(model, x, y),
        "size_bytes": float(saved_size(model, save_to)),
        "latency_ms": statistics.median(latency),
        "latency_p90_ms": statistics.quantiles(latency, n=10)[-1],
        "throughput": throughput(model, timed[: settings.batch], settings),
        "params": float(count_params(model)),
    }


def full_length(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Token rows with every padding position filled by the row's own tokens, repeated: a text model then runs
    the whole configured sequence length, however short the sentence."""
    rows = []
    for row in ids:
        real = row[row != pad_id]
        rows.append(real.repeat(-(-len(row) // max(1, len(real))))[: len(row)] if len(real) else row)
    return torch.stack(rows)


def saved_size(model: nn.Module, path: Path) -> int:
    """Save ``model``'s state dict to ``path`` and return the file's size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path.stat().st_size


@torch.inference_mode()
def latency_ms(model: nn.Module, x: torch.Tensor, settings: MeasureSettings) -> list[float]:
    """Wall-clock milliseconds of each of ``settings.repeats`` forward passes on ``x``, after warm-up."""
    model.eval()
    with _threads(settings.threads):
        for _ in range(settings.warmup):
            model(x)
        times = []
        for _ in range(settings.repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1e3)
    return times


def throughput(model: nn.Module, batch: torch.Tensor, settings: MeasureSettings) -> float:
    """Samples per second at ``len(batch)``, from the median batch latency."""
    quick = MeasureSettings(settings.threads, max(1, settings.warmup // 2), max(3, settings.repeats // 5))
    return len(batch) / (statistics.median(latency_ms(model, batch, quick)) / 1e3)


def count_params(model: nn.Module) -> int:
    """Weight elements in the state dict, so quantized modules (whose weights are not Parameters) count too."""
    return sum(_numel(value) for key, value in model.state_dict().items() if not key.endswith(_NOT_WEIGHTS))


def _numel(value: object) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (tuple, list)):
        return sum(_numel(v) for v in value)
    return 0


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
