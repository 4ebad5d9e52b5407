"""The Pareto front: the trials no other feasible trial beats on every objective."""

from __future__ import annotations

from typing import Sequence

import numpy as np


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
