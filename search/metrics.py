"""Measure a compressed model as it is deployed: the task metrics (accuracy, macro F1) of the runtime's artifact,
its real bytes on disk and real latency (median and p90, batch 1 and the configured batch), FLOPs and parameters."""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from squeezer.compressors.quantize import float_model
from squeezer.search.config import MeasureSettings
from squeezer.search.data.preprocess import InputSpec
from squeezer.search.data.text import full_length
from squeezer.search.runtime import Deployed, deploy


def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: MeasureSettings, workdir: Path,
            pad_id: int | None = None, spec: InputSpec | None = None) -> dict[str, float]:
    """All trial metrics of ``model`` deployed in ``settings.runtime`` under ``workdir``. With ``spec``, the deployed
    model takes the raw input ``x`` (its preprocessing is part of it: measured with it). For token inputs
    (``pad_id`` given), speed is measured at the full sequence length."""
    timed = x[: settings.batch] if pad_id is None else full_length(x[: settings.batch], pad_id)
    example = timed[:1] if spec is None else spec.prepared(timed[:1])
    deployed = deploy(model, settings.runtime, workdir, example, settings.threads, spec)
    predicted = deployed.predict(x).argmax(1)
    single, batch = latency_ms(deployed, timed[:1], settings), latency_ms(deployed, timed, settings)
    return {
        "accuracy": (predicted == y).float().mean().item(),
        "f1_macro": float(f1_score(y.numpy(), predicted.numpy(), average="macro")),
        "size_bytes": float(deployed.path.stat().st_size),
        "latency_ms": statistics.median(single),
        "latency_p90_ms": _p90(single),
        "latency_batch_ms": statistics.median(batch),
        "latency_batch_p90_ms": _p90(batch),
        "throughput": len(timed) / (statistics.median(batch) / 1e3),
        "params": float(count_params(model)),
        "flops": float(count_flops(model, example)),
    }


def saved_size(model: nn.Module, path: Path) -> int:
    """Save ``model``'s state dict to ``path`` and return the file's size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path.stat().st_size


def latency_ms(model: Deployed, x: torch.Tensor, settings: MeasureSettings) -> list[float]:
    """Wall-clock milliseconds of each of ``settings.repeats`` forward passes on ``x``, after warm-up."""
    with _threads(settings.threads):
        for _ in range(settings.warmup):
            model(x)
        times = []
        for _ in range(settings.repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1e3)
    return times


def count_params(model: nn.Module) -> int:
    """Non-zero weights of the (float) model: what structured pruning removes, unstructured pruning zeroes."""
    return sum(int(torch.count_nonzero(p)) for p in float_model(model).parameters())


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Floating-point operations of one forward pass on ``x`` (multiply and add counted apart), by torch's counter."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        float_model(model).eval()(x)
    return counter.get_total_flops()


def _p90(times: list[float]) -> float:
    return statistics.quantiles(times, n=10)[-1]


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
