"""How good a Pareto front is: its hypervolume (computed by moocore) in objectives scaled by the teacher's, and the
knee point recommended from it.

Each objective is divided by the teacher's value and turned into one to minimise: ``-accuracy / teacher's`` (the
reference is 0: no accuracy), ``size / teacher's`` (the reference is 1: no smaller than the teacher). The
hypervolume is then the share of that box the front dominates: 0 for nothing better than the teacher, larger is
better, comparable across studies of one teacher. ``search.reference`` may set other reference values (in the
metrics' own units, e.g. ``{accuracy: 0.8, size_bytes: 200000}``): the box is then the region worth having.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def scaled(metrics: Sequence[Mapping[str, float]], objectives: Mapping[str, str],
           teacher: Mapping[str, float]) -> np.ndarray:
    """Rows of objectives to minimise, each divided by the teacher's value (maximised ones negated)."""
    return np.array([[(-1 if direction == "maximize" else 1) * m[name] / max(abs(teacher[name]), 1e-12)
                      for name, direction in objectives.items()] for m in metrics], dtype=float).reshape(
        len(metrics), len(objectives))


def reference(objectives: Mapping[str, str], teacher: Mapping[str, float],
              given: Mapping[str, float] | None = None) -> np.ndarray:
    """The reference point in scaled units: ``given`` values (in the metrics' own units, ``search.reference``) where
    set, else derived from the teacher: no accuracy, the teacher's size and latency."""
    derived = {name: 0.0 if direction == "maximize" else teacher[name] for name, direction in objectives.items()}
    return scaled([{**derived, **(given or {})}], objectives, teacher)[0]


def hypervolume(metrics: Sequence[Mapping[str, float]], objectives: Mapping[str, str],
                teacher: Mapping[str, float], given: Mapping[str, float] | None = None) -> float:
    """The scaled hypervolume the trials' ``metrics`` dominate (points beyond the reference add nothing);
    ``given``: the reference values that are not the teacher's (``reference``)."""
    import moocore

    ref = reference(objectives, teacher, given)
    points = scaled(metrics, objectives, teacher)
    points = points[(points < ref).all(axis=1)] if len(points) else points
    return float(moocore.hypervolume(points, ref=ref)) if len(points) else 0.0


def history(trials: Sequence[Mapping[str, float] | None], objectives: Mapping[str, str],
            teacher: Mapping[str, float], given: Mapping[str, float] | None = None) -> list[float]:
    """The hypervolume after each of ``trials`` in the order they ended (a trial's metrics, or None for one that
    was spent without a result: it adds nothing)."""
    return [hypervolume([m for m in trials[:k] if m is not None], objectives, teacher, given)
            for k in range(1, len(trials) + 1)]


def knee(metrics: Sequence[Mapping[str, float]], objectives: Mapping[str, str],
         teacher: Mapping[str, float]) -> int | None:
    """Index of the recommended member of a front: the one nearest the ideal point once each objective is scaled to
    [0, 1] over the front (the best trade-off when no objective is preferred)."""
    if not metrics:
        return None
    points = scaled(metrics, objectives, teacher)
    low, high = points.min(axis=0), points.max(axis=0)
    spread = np.where(high > low, high - low, 1.0)
    return int(np.argmin(np.linalg.norm((points - low) / spread, axis=1)))
