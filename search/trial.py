"""One trial, the same for every search backend: build the student, run the pipeline, measure the result."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from squeezer import compressors
from squeezer.compressors.base import Report, TrialContext
from squeezer.compressors.training import accuracy, predict
from squeezer.search import data, models
from squeezer.search.config import ExperimentConfig
from squeezer.search.metrics import measure
from squeezer.search.teacher import get_teacher, teacher_logits
from squeezer.spaces import boundary_points


class TrialFailed(RuntimeError):
    """The trial ran but its result is unusable (e.g. a NaN metric)."""


@dataclass
class Workbench:
    """What every trial of a study shares, prepared once: the data, the teacher and its logits."""

    config: ExperimentConfig
    splits: data.Splits
    teacher: nn.Module
    teacher_logits: torch.Tensor


def baseline(bench: Workbench) -> dict[str, float]:
    """The teacher measured like a trial (plus its test accuracy): the reference every student is compared with."""
    s = bench.splits
    with tempfile.TemporaryDirectory(prefix="squeezer-") as workdir:
        metrics = measure(bench.teacher, s.val_x, s.val_y, bench.config.measure, Path(workdir) / "teacher.pt")
    return {**metrics, "test_accuracy": accuracy(bench.teacher, s.test_x, s.test_y)}


def prepare(config: ExperimentConfig) -> Workbench:
    """Load the data and the teacher, and check that every student the space allows can be built."""
    splits = data.load(config.data, config.seed)
    for arch in boundary_points(config.student):
        models.build(arch, splits.input_shape, splits.num_classes)
    teacher = get_teacher(config.teacher, splits, config.seed, config.batch_size)
    return Workbench(config, splits, teacher, teacher_logits(teacher, splits.train_x))


def run_trial(bench: Workbench, params: Mapping[str, Mapping[str, Any]], seed: int, workdir: Path,
              report: Report = lambda step, metrics: None) -> dict[str, float]:
    """Build the student from ``params['student']``, apply each pipeline step with its params, measure it.

    The compressed model's state dict is saved as ``workdir/model.pt``; its size is the ``size_bytes`` metric.
    """
    torch.manual_seed(seed)
    s = bench.splits
    model = models.build(dict(params["student"]), s.input_shape, s.num_classes)
    ctx = TrialContext(s.train_x, s.train_y, s.val_x, s.val_y, teacher=bench.teacher,
                       teacher_logits=bench.teacher_logits, seed=seed, batch_size=bench.config.batch_size,
                       report=report)
    for step in bench.config.pipeline:
        model = compressors.get(step.name)(dict(params.get(step.name, {}))).apply(model, ctx)
    if not torch.isfinite(predict(model, s.val_x[:256])).all():
        raise TrialFailed("the compressed model outputs NaN or inf")
    metrics = measure(model, s.val_x, s.val_y, bench.config.measure, workdir / "model.pt")
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise TrialFailed(f"non-finite metrics {bad}")
    return metrics


def flatten(params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{'prune': {'ratio': 0.3}}`` -> ``{'prune.ratio': 0.3}``: the names MLflow and the tables show."""
    return {f"{section}.{key}": value for section, values in params.items() for key, value in values.items()}
