"""How good a Pareto front is: its hypervolume (computed by moocore) in objectives scaled by the teacher's; and which
member to recommend (``recommend``), judged relative to the teacher with each validation accuracy's standard error.

Each objective is divided by the teacher's value and turned into one to minimise: ``-accuracy / teacher's`` (the
reference is 0: no accuracy), ``size / teacher's`` (the reference is 1: no smaller than the teacher). The
hypervolume is then the share of that box the front dominates: 0 for nothing better than the teacher, larger is
better, comparable across studies of one teacher. ``search.reference`` may set other reference values (in the
metrics' own units, e.g. ``{accuracy: 0.8, size_bytes: 200000}``): the box is then the region worth having. A
language model's perplexity is minimised like size, but its reference is twice the teacher's (``PERPLEXITY_REFERENCE``:
students are rarely better than their teacher, and one twice as perplexed is worth nothing here).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from squeezer.search.config.objectives import ACCURACY, quality_of, standard_error
from squeezer.search.results.pareto import front_mask

PERPLEXITY_REFERENCE = 2.0


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
    derived = {name: 0.0 if direction == "maximize" else teacher[name] * (PERPLEXITY_REFERENCE if name ==
                                                                         "perplexity" else 1.0)
               for name, direction in objectives.items()}
    return scaled([{**derived, **(given or {})}], objectives, teacher)[0]


def hypervolume(metrics: Sequence[Mapping[str, float]], objectives: Mapping[str, str],
                teacher: Mapping[str, float], given: Mapping[str, float] | None = None, plain: bool = False) -> float:
    """The scaled hypervolume the front of the trials' ``metrics`` dominates (``pareto.front_mask``: a point
    dominated but for measurement noise adds nothing; nor do points beyond the reference); ``given``: the reference
    values that are not the teacher's (``reference``). ``plain``: every point counts, as measured — the plain
    front's hypervolume, which never falls as trials are added (the noise-aware front's may: a new trial can tie a
    member within noise and beat it beyond noise elsewhere, and push it off)."""
    import moocore

    ref = reference(objectives, teacher, given)
    if not plain:
        metrics = [m for m, on in zip(metrics, front_mask(metrics, objectives), strict=True) if on]
    points = scaled(metrics, objectives, teacher)
    points = points[(points < ref).all(axis=1)] if len(points) else points
    return float(moocore.hypervolume(points, ref=ref)) if len(points) else 0.0


def history(trials: Sequence[Mapping[str, float] | None], objectives: Mapping[str, str],
            teacher: Mapping[str, float], given: Mapping[str, float] | None = None,
            front: Callable[[int], Sequence[Mapping[str, float]]] | None = None, plain: bool = False) -> list[float]:
    """The hypervolume after each of ``trials`` in the order they ended (a trial's metrics, or None for one that
    was spent without a result: it adds nothing); ``front(k)``, where given, picks the points that count among the
    first k (the front's entries, one per recipe); ``plain``: of the plain front (never falling)."""
    front = front or (lambda k: [m for m in trials[:k] if m is not None])
    return [hypervolume(front(k), objectives, teacher, given, plain) for k in range(1, len(trials) + 1)]


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


def recommend(metrics: Sequence[Mapping[str, float]], objectives: Mapping[str, str], teacher: Mapping[str, float],
              samples: int, min_share: float) -> tuple[int | None, str]:
    """Index of the member to recommend and why. Accuracies are compared with their standard errors (validation
    on ``samples`` examples): within one, two accuracies are a tie. Of the members keeping ``min_share`` of the
    teacher's quality (within their error; a perplexity's share is the teacher's over its own), the cheapest: the
    least size and latency relative to the teacher (summed log ratios of the other objectives). If none keeps it,
    the best (the cheapest of its ties). Without the quality among the objectives: the knee."""
    if not metrics:
        return None, ""
    q = quality_of(teacher)
    if q.metric not in objectives:
        return knee(metrics, objectives, teacher), "the knee of the front (nearest the ideal point)"
    # scores: higher is better (a perplexity negated); errors: accuracy's standard error, none for perplexity
    score = np.array([m[q.metric] if q.higher_is_better else -m[q.metric] for m in metrics])
    error = np.array([standard_error(m[q.metric], samples) if q is ACCURACY else 0.0 for m in metrics])
    cost = [sum((1 if direction == "minimize" else -1) * np.log(max(m[name], 1e-12) / max(teacher[name], 1e-12))
                for name, direction in objectives.items() if name != q.metric) for m in metrics]
    keeping = [i for i in range(len(metrics))
               if q.share(abs(score[i]) + (error[i] if q.higher_is_better else 0.0), teacher[q.metric]) >= min_share]
    kept = f"keeping {min_share:.0%} of the teacher's accuracy (within its error)" if q is ACCURACY else \
        f"within {1 / min_share - 1:.0%} of the teacher's perplexity"
    if keeping:
        return min(keeping, key=lambda i: (cost[i], -score[i])), f"the smallest and fastest member {kept}"
    best = int(np.argmax(score))
    ties = [i for i in range(len(metrics)) if score[i] + np.hypot(error[i], error[best]) >= score[best]]
    return min(ties, key=lambda i: (cost[i], -score[i])), \
        (f"none keeps {min_share:.0%} of the teacher's accuracy: the most accurate (the smallest of its ties)"
         if q is ACCURACY else f"none is {kept}: the least perplexed (the smallest of its ties)")
