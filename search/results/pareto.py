"""The Pareto front: the recipes no other feasible one beats on every objective beyond the noise of measuring them;
the metrics and budget violations a trial is told with.

Measurements are noisy: a latency read 0.0127 ms against 0.0130 ms, or an accuracy 0.2 points apart on 500 samples,
is not a trade-off. Each noisy objective carries its error (``objectives.ERRORS``: accuracy's standard error, a
latency's confidence half-width); two values closer than their errors combined (``hypot``) are a tie, and a trial is
dominated when another is no worse within noise on every objective and better beyond it on one (as well as when it
is plainly dominated). The runs of one recipe (``search.repeats``, or a sampler that drew it twice) are one entry:
its median run by quality, its noisy objectives' errors widened to their spread over the runs. ``strict`` gives the
plain front of every run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from squeezer.search.config.objectives import ERRORS, Constraint, quality_of
from squeezer.search.trial.recipe import recipe_key
from squeezer.search.trial import records


def pareto_mask(values: np.ndarray, directions: Sequence[str], feasible: np.ndarray | None = None,
                errors: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n trials x k objectives).

    A row is dominated when another feasible row is at least as good on every objective and better on one; with
    ``errors`` (n x k, each value's error in its units), also when another is at least as good within the two
    errors combined and better beyond them (so the front only loses members). Infeasible rows are never on the
    front. Ties within noise need not be transitive: should they leave no row undominated, the plain front is
    returned.
    """
    costs = _costs(values, directions)
    feasible = np.ones(len(costs), bool) if feasible is None else np.asarray(feasible, bool)
    noise = np.zeros_like(costs) if errors is None else np.abs(np.asarray(errors, float)).reshape(costs.shape)
    margin = np.hypot(noise[:, None, :], noise[None, :, :])  # [i, j, k]: what i and j must differ by on k
    gain = costs[None, :, :] - costs[:, None, :]  # [i, j, k]: how much cheaper i is than j on k
    plainly = (gain >= 0).all(-1) & (gain > 0).any(-1)
    beyond_noise = (gain >= -margin).all(-1) & (gain > margin).any(-1)
    dominated = ((plainly | beyond_noise) & feasible[:, None]).any(0)
    mask = feasible & ~dominated
    if errors is not None and feasible.any() and not mask.any():
        return pareto_mask(values, directions, feasible)
    return mask


def front_mask(metrics: Sequence[Mapping[str, float]], objectives: Mapping[str, str],
               strict: bool = False) -> np.ndarray:
    """``pareto_mask`` of trials' metrics under ``objectives`` (name -> direction), ties within each noisy
    objective's error (``objectives.ERRORS``, read from the metrics; none where a metric lacks it) unless
    ``strict``."""
    values = np.array([[m[name] for name in objectives] for m in metrics], float).reshape(len(metrics),
                                                                                          len(objectives))
    return pareto_mask(values, list(objectives.values()), errors=None if strict else errors_of(metrics, objectives))


def errors_of(metrics: Sequence[Mapping[str, float]], objectives: Iterable[str]) -> np.ndarray:
    """Each objective's error per trial (n x k): the metric ``objectives.ERRORS`` names, 0 where there is none."""
    names = list(objectives)
    return np.array([[m.get(ERRORS.get(name, ""), 0.0) for name in names] for m in metrics],
                    float).reshape(len(metrics), len(names))


@dataclass(frozen=True)
class Entry:
    """One recipe on the front: its completed runs and their metrics, represented by the median run by quality,
    whose metrics carry each noisy objective's error widened to the runs' spread (standard deviation)."""

    runs: tuple[FrozenTrial, ...]
    measured: tuple[Mapping[str, float], ...]

    @property
    def median(self) -> int:
        q = quality_of(self.measured[0])
        ranked = sorted(range(len(self.runs)), key=lambda i: (self.measured[i].get(q.metric, 0.0),
                                                              self.runs[i].number))
        return ranked[(len(ranked) - 1) // 2]

    @property
    def trial(self) -> FrozenTrial:
        return self.runs[self.median]

    @property
    def metrics(self) -> dict[str, float]:
        found = dict(self.measured[self.median])
        if len(self.runs) > 1:
            for name, error in ERRORS.items():
                if name in found:
                    spread = statistics.stdev(m[name] for m in self.measured)
                    found[error] = max(found.get(error, 0.0), spread)
        return found


def measured(trial: FrozenTrial, objectives: Mapping[str, str]) -> dict[str, float]:
    """A completed trial's metrics (``keep_metrics``); its objective values alone for one told without them."""
    return records.metrics(trial) or dict(zip(objectives, trial.values, strict=True))


def recipes(trials: Sequence[FrozenTrial], objectives: Mapping[str, str]) -> list[Entry]:
    """``trials`` (completed) grouped by recipe (equal params), in the order each recipe first ran."""
    groups: dict[tuple, list[FrozenTrial]] = {}
    for trial in trials:
        groups.setdefault(recipe_key(trial.params), []).append(trial)
    return [Entry(tuple(runs), tuple(measured(t, objectives) for t in runs)) for runs in groups.values()]


def members(trials: Sequence[FrozenTrial], objectives: Mapping[str, str], strict: bool = False) -> list[FrozenTrial]:
    """The front of completed, feasible ``trials``: one trial per recipe, ties within noise; ``strict``: the plain
    front of every run."""
    if strict:
        mask = front_mask([measured(t, objectives) for t in trials], objectives, strict=True)
        return [t for t, on in zip(trials, mask, strict=True) if on]
    entries = recipes(trials, objectives)
    mask = front_mask([e.metrics for e in entries], objectives)
    return sorted((e.trial for e, on in zip(entries, mask, strict=True) if on), key=lambda t: t.number)


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether objective values ``a`` are at least as good as ``b`` on every objective and better on one."""
    x, y = _costs([a, b], directions)
    return bool((x <= y).all() and (x < y).any())


def _costs(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """Rows of objective values turned into costs: maximised ones negated, so smaller is better everywhere."""
    values = np.asarray(values, dtype=float).reshape(len(values), len(directions))
    return values * np.array([-1.0 if d == "maximize" else 1.0 for d in directions])


def keep_metrics(trial: optuna.Trial, metrics: Mapping[str, float], constraints: Iterable[Constraint]) -> None:
    """Store a trial's metrics and its budget violations (Optuna's constraints) on it, before it is told."""
    records.write(trial, metrics=dict(metrics))
    for constraint in constraints:
        trial.set_constraint(str(constraint), constraint.violation(metrics))


def feasible(study: optuna.Study) -> list[FrozenTrial]:
    """The completed trials that keep every budget."""
    return [t for t in study.get_trials(deepcopy=False, states=[TrialState.COMPLETE]) if keeps_budgets(t)]


def keeps_budgets(trial: FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def pareto_trials(study: optuna.Study, objectives: Mapping[str, str], strict: bool = False) -> list[FrozenTrial]:
    """The Pareto front of ``study`` under ``objectives`` (name -> direction): ``members`` of its feasible trials."""
    return members(feasible(study), objectives, strict)
