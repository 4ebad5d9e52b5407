"""One trial, the same for every search backend and kind of model: build the student, run the pipeline, measure the
result (the study's bench builds, deploys and measures: ``trial.benches``)."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from optuna.trial import TrialState
from torch import nn

from squeezer import compressors
from squeezer.compressors.base import Report
from squeezer.search.trial import baselines
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.config.kinds import foreign
from squeezer.search.config.objectives import CHEAP, COUNTS, Constraint
from squeezer.search.runtime.onnx_export import ExportError
from squeezer.search.errors import ConfigError, TrialFailed
from squeezer.search.trial.benches import Bench
from squeezer.search.trial.workbench import named_by


@dataclass
class Outcome:
    """What one trial attempt produced: its metrics, or the reason it failed; and its per-epoch curves."""

    metrics: dict[str, float] | None
    error: str | None = None
    curves: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False  # stopped early (``error`` says why), not failed

    @property
    def reason(self) -> str:
        """The first line of the error: what the progress line and the summary show."""
        return self.error.splitlines()[0] if self.error else ""

    @property
    def recorded_as(self) -> tuple[TrialState, str]:
        """How every backend records it: the study storage's state and the MLflow run's status. Stopped early:
        PRUNED and KILLED (with the reason); failed: FAIL and FAILED; else COMPLETE and FINISHED."""
        if self.stopped:
            return TrialState.PRUNED, "KILLED"
        return (TrialState.FAIL, "FAILED") if self.metrics is None else (TrialState.COMPLETE, "FINISHED")


#: What building and measuring a recipe raises when the recipe, not Squeezer, is at fault: a setting refused
#: (``ConfigError``, ``InvalidConfig``: ValueErrors), a model that does not export, a result that is unusable. Screening
#: and budget checks treat these as "this recipe reaches nothing"; anything else is a bug and propagates.
UNBUILDABLE: tuple[type[Exception], ...] = (ValueError, ExportError, TrialFailed, torch.OutOfMemoryError)

#: How a trial's reason starts when the config, not the trial, is at fault (``attempt`` writes the type first).
CONFIG_FAULT = f"{ConfigError.__name__}: "


def run_trial(bench: Bench, params: Mapping[str, Mapping[str, Any]], seed: int, workdir: Path,
              report: Report = lambda step, metrics: None, watch: Watch | None = None) -> dict[str, float]:
    """Build the student from ``params['student']``, apply each pipeline step with its params, measure it.

    Before training, the student's cheap metrics (size, speed) are measured when a budget or ``watch`` needs them;
    ``watch`` then sees every epoch's report and may stop the trial (``StoppedEarly``).

    The compressed model is written to ``workdir`` as its runtime deploys it (model.onnx or model.pt; that file's
    bytes are the ``size_bytes`` metric) and as an export (student.pt and architecture.json); a language model as
    its runtime deploys it (``runtime.lm``) beside its save_pretrained folder.
    """
    model, ctx = bench.student(params, seed, report)
    if watch is not None or any(c.metric in CHEAP for c in bench.config.constraints):
        cheap = cheap_metrics(bench, model, params, ctx)
        check_budgets(bench, cheap)
        ctx = dataclasses.replace(ctx, report=_both(report, watch(cheap) if watch else None))
    model.to(ctx.device.where)  # the pipeline trains on the device; what it returns is deployed from the CPU
    for name, settings in steps(bench.config, params):
        with named_by(name):
            model = compressors.get(name)(settings).apply(model, ctx)
    metrics = bench.deploy_and_measure(model.cpu().eval(), params, workdir)
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise TrialFailed(f"non-finite metrics {bad}")
    return metrics


def steps(config: ExperimentConfig, params: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The compressors a trial runs, in order, with their settings: the pipeline's steps that ``params`` holds (all,
    for a sampled recipe), then any other compressor it names (a baseline quantizes without a quantize step)."""
    names = [step.name for step in config.pipeline if step.name in params]
    names += [name for name in params if name not in names and name not in ("student", baselines.PARAM)]
    return [(name, dict(params[name])) for name in names]


def student(bench: Bench, params: Mapping[str, Mapping[str, Any]], seed: int,
            report: Report = lambda step, metrics: None) -> tuple[nn.Module, Any]:
    """The untrained student ``params['student']`` describes (checked to fit first, seeded), and the context its
    compressors run in: the kind of model's bench builds it."""
    return bench.student(params, seed, report)


#: ``watch(cheap_metrics)`` -> the per-epoch report hook that may stop the trial (``StoppedEarly``); or None.
Watch = Callable[[Mapping[str, float]], "Report | None"]


class StoppedEarly(RuntimeError):
    """The trial was stopped while training because it cannot reach the Pareto front; the message says why."""


def cheap_metrics(bench: Bench, model: nn.Module, params: Mapping[str, Mapping[str, Any]],
                  ctx: Any) -> dict[str, float]:
    """Size and speed of ``model`` after the pipeline without its training (``Compressor.untrained``), deployed and
    measured like a trial: what is known before anything trains (``cheap_names``: timed only where a latency is
    searched on or budgeted, with its error)."""
    for name, settings in steps(bench.config, params):
        quick = compressors.get(name)(settings).untrained()
        if quick is not None:
            model = quick.apply(model, ctx)
    with tempfile.TemporaryDirectory(prefix="squeezer-untrained-") as tmp:  # not the trial's folder: no artifact
        return bench.measure_untrained(model, cheap_names(bench.config), Path(tmp))


def cheap_names(config: ExperimentConfig) -> list[str]:
    """The cheap metrics ``cheap_metrics`` measures: the counts of the model's kind (size, parameters, FLOPs: no
    timing needed), and the latencies the study searches on or budgets."""
    searched = {*config.objectives, *(c.metric for c in config.constraints)}
    return [name for name in CHEAP if name not in foreign(config.kind) and (name in COUNTS or name in searched)]


def check_budgets(bench: Bench, cheap: Mapping[str, float]) -> None:
    """Reject (``TrialFailed``, with the reason) a trial whose untrained compressed student already breaks a size or
    speed budget: training cannot mend it."""
    broken = broken_budgets(bench, cheap)
    if broken:
        raise TrialFailed("rejected before training: " + "; ".join(
            f"{c.metric} = {cheap[c.metric]:g} breaks {c}" for c in broken) + " (the untrained compressed student)")


def broken_budgets(bench: Bench, cheap: Mapping[str, float]) -> list[Constraint]:
    """The budgets that ``cheap`` metrics (known before training) already break."""
    return [c for c in bench.config.constraints if c.metric in cheap and c.violation(cheap) > 0]


def _both(first: Report, second: Report | None) -> Report:
    if second is None:
        return first

    def report(step: int, metrics: Mapping[str, float]) -> None:
        first(step, metrics)
        second(step, metrics)
    return report


def attempt(bench: Bench, params: Mapping[str, Mapping[str, Any]], seed: int, workdir: Path,
            report: Report = lambda step, metrics: None, watch: Watch | None = None) -> Outcome:
    """``run_trial`` that never raises for a broken trial: a failure (MemoryError included) becomes its reason.

    Per-epoch metrics are buffered in the outcome, so trackers write them in one batch instead of a round trip
    per epoch. ``KeyboardInterrupt`` still propagates: the user stops the study, not the trial.
    """
    curves: list[tuple[int, dict[str, float]]] = []

    def buffer(step: int, metrics: Mapping[str, float]) -> None:
        curves.append((step, dict(metrics)))
        report(step, metrics)

    started = time.monotonic()
    try:
        metrics = run_trial(bench, params, seed, workdir, report=buffer, watch=watch)
        return Outcome(metrics, None, curves, time.monotonic() - started)
    except StoppedEarly as stop:
        return Outcome(None, str(stop), curves, time.monotonic() - started, stopped=True)
    except Exception as err:  # noqa: BLE001 - any failure of one trial is recorded, and the study goes on
        error = f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
        return Outcome(None, error, curves, time.monotonic() - started)
