"""Measure a compressed model as it is deployed: the task metrics (accuracy, macro F1) of the runtime's artifact,
its real bytes on disk and real latency (median and p90, batch 1 and the configured batch; timed against a reference
model in the same rounds where one is given), FLOPs and parameters."""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator

import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from squeezer.compressors.device import on_cpu
from squeezer.compressors.quantize import float_model
from squeezer.search.config.objectives import METRICS, standard_error
from squeezer.search.config.run_settings import MeasureSettings
from squeezer.search.data.inputs import InputSpec
from squeezer.search.data.text import full_length
from squeezer.search.runtime import Deployed, deploy


@dataclass
class Reference:
    """The model every latency is timed against (the study's teacher, deployed as the students are) and its
    latencies when the study started: a model's ``latency_ms`` is its median ratio to the reference, timed in the
    same rounds, times ``single_ms`` — so load that slows both alike cancels, and the figure stays in milliseconds."""

    model: Deployed
    single_ms: float
    batch_ms: float


#: What each timing gives: batch-1 latency (paired with the reference's batch-1 run) and latency at measure.batch.
SINGLE = ("latency_ms", "latency_ci_ms", "latency_raw_ms", "latency_p90_ms")
BATCH = ("latency_batch_ms", "latency_batch_ci_ms", "latency_batch_p90_ms", "throughput")


def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: MeasureSettings, workdir: Path,
            pad_id: int | None = None, spec: InputSpec | None = None, reference: Reference | None = None,
            deployed: tuple[Deployed, torch.Tensor] | None = None,
            only: Collection[str] | None = None) -> dict[str, float]:
    """All trial metrics of ``model`` deployed in ``settings.runtime`` under ``workdir``. With ``spec``, the deployed
    model takes the raw input ``x`` (its preprocessing is part of it: measured with it). For token inputs
    (``pad_id`` given), speed is measured at the full sequence length. With a ``reference``, latencies are timed
    against it (``Reference``); ``latency_raw_ms`` keeps the plain median either way. ``deployed``: ``model``
    deployed already (``deployed_for_timing``), then ``workdir`` is not written. ``only``: the metrics wanted
    (size and parameters always come): nothing else is run — no prediction without accuracy, no timing without a
    latency. The batch is timed in ``settings.batch_rounds`` rounds."""
    model = on_cpu(model)  # trained on a GPU maybe; deployed from the CPU
    deployed, timed = deployed or deployed_for_timing(model, x, settings, workdir, pad_id, spec)
    wanted = set(METRICS) | set(SINGLE) | set(BATCH) if only is None else set(only)
    found = {"size_bytes": float(deployed.path.stat().st_size), "params": float(count_params(model))}
    if wanted & {"accuracy", "accuracy_se", "f1_macro"}:
        predicted = deployed.predict(x).argmax(1)
        accuracy = (predicted == y).float().mean().item()
        found |= {"accuracy": accuracy, "accuracy_se": standard_error(accuracy, len(y)),
                  "f1_macro": float(f1_score(y.numpy(), predicted.numpy(), average="macro"))}
    if wanted & set(SINGLE):
        single = timed_ms(deployed, timed[:1], settings, reference and (reference.model, reference.single_ms))
        found |= dict(zip(SINGLE, (single.ms, single.error_ms, statistics.median(single.times), _p90(single.times)),
                          strict=True))
    if wanted & set(BATCH):
        rounds = dataclasses.replace(settings, repeats=settings.batch_rounds)
        batch = timed_ms(deployed, timed, rounds, reference and (reference.model, reference.batch_ms))
        found |= dict(zip(BATCH, (batch.ms, batch.error_ms, _p90(batch.times), len(timed) / (batch.ms / 1e3)),
                          strict=True))
    if "flops" in wanted:
        found["flops"] = float(count_flops(model, deployed_input(timed[:1], spec)))
    return found


def deployed_input(timed: torch.Tensor, spec: InputSpec | None) -> torch.Tensor:
    return timed if spec is None else spec.prepared(timed)


def deployed_for_timing(model: nn.Module, x: torch.Tensor, settings: MeasureSettings, workdir: Path,
                        pad_id: int | None = None, spec: InputSpec | None = None) -> tuple[Deployed, torch.Tensor]:
    """``model`` deployed in ``settings.runtime`` under ``workdir``, and the inputs its latency is timed on (the
    first ``settings.batch`` rows of ``x``; token rows at their full length)."""
    timed = x[: settings.batch] if pad_id is None else full_length(x[: settings.batch], pad_id)
    return deploy(model, settings.runtime, workdir, deployed_input(timed[:1], spec), settings.threads, spec,
                  settings.device), timed


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
        return [_timed(model, x) for _ in range(settings.repeats)]


@dataclass(frozen=True)
class Timing:
    """A model's timed runs (ms), its latency figure and that figure's error: the half-width of its ~95 % confidence
    interval (``median_interval``), what two latencies must differ by to count as different (``results.pareto``)."""

    times: list[float]
    ms: float
    error_ms: float


def timed_ms(model: Deployed, x: torch.Tensor, settings: MeasureSettings,
             against: tuple[Deployed, float] | None = None) -> Timing:
    """``settings.repeats`` runs of ``model`` on ``x`` and its latency: their median; or, ``against`` a reference
    model and its latency, timed alternately with it, the median ratio times that latency."""
    if against is None:
        times = latency_ms(model, x, settings)
        low, high = median_interval(times)
        return Timing(times, statistics.median(times), (high - low) / 2)
    reference, reference_ms = against
    times, theirs = paired_ms(model, reference, x, settings)
    ratios = [m / max(t, 1e-9) for m, t in zip(times, theirs, strict=True)]
    low, high = median_interval(ratios)
    return Timing(times, statistics.median(ratios) * reference_ms, (high - low) / 2 * reference_ms)


def median_interval(values: list[float], z: float = 1.96) -> tuple[float, float]:
    """A distribution-free confidence interval (~95 % at ``z`` = 1.96) of the median of ``values``: the order
    statistics at ranks n/2 -+ z sqrt(n)/2 (the normal approximation of the binomial count below the median)."""
    ordered, n = sorted(values), len(values)
    half = z * math.sqrt(n) / 2
    return ordered[max(math.floor(n / 2 - half), 0)], ordered[min(math.ceil(n / 2 + half), n - 1)]


def paired_ms(model: Deployed, reference: Deployed, x: torch.Tensor,
              settings: MeasureSettings) -> tuple[list[float], list[float]]:
    """Milliseconds of ``settings.repeats`` forward passes of ``model`` and of ``reference`` on ``x``, alternating
    (which goes first alternates too), after warming both up: each pair sees the machine in the same state."""
    with _threads(settings.threads):
        for _ in range(settings.warmup):
            model(x)
            reference(x)
        mine, theirs = [], []
        for i in range(settings.repeats):
            first, second = (model, reference) if i % 2 == 0 else (reference, model)
            a, b = _timed(first, x), _timed(second, x)
            mine.append(a if i % 2 == 0 else b)
            theirs.append(b if i % 2 == 0 else a)
    return mine, theirs


def _timed(model: Deployed, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x)
    return (time.perf_counter() - start) * 1e3


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
