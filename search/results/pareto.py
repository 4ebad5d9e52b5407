"""The Pareto front: the trials no other feasible trial beats on every objective; the metrics and budget
violations a trial is told with."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from squeezer.search.config.objectives import Constraint


def pareto_mask(values: np.ndarray, directions: Sequence[str], feasible: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n trials x k objectives).

    A row is dominated when another feasible row is at least as good on every objective and better on one.
    Infeasible rows are never on the front.
    """
    costs = _costs(values, directions)
    feasible = np.ones(len(costs), bool) if feasible is None else np.asarray(feasible, bool)
    candidates = costs[feasible]
    no_worse = (candidates[:, None, :] <= costs[None, :, :]).all(-1)
    better = (candidates[:, None, :] < costs[None, :, :]).any(-1)
    dominated = (no_worse & better).any(0)
    return feasible & ~dominated


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
    trial.set_user_attr("metrics", dict(metrics))
    for constraint in constraints:
        trial.set_constraint(str(constraint), constraint.violation(metrics))


def feasible(study: optuna.Study) -> list[FrozenTrial]:
    """The completed trials that keep every budget."""
    return [t for t in study.get_trials(deepcopy=False, states=[TrialState.COMPLETE]) if keeps_budgets(t)]


def keeps_budgets(trial: FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def pareto_trials(study: optuna.Study, objectives: Mapping[str, str]) -> list[FrozenTrial]:
    """The completed, feasible, non-dominated trials of ``study`` under ``objectives`` (name -> direction)."""
    done = study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])
    if not done:
        return []
    values = np.array([t.values for t in done])
    mask = pareto_mask(values, list(objectives.values()), np.array([keeps_budgets(t) for t in done]))
    return [t for t, on in zip(done, mask, strict=True) if on]
