"""The Pareto front: the trials no other feasible trial beats on every objective."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pareto_mask(values: np.ndarray, directions: Sequence[str], feasible: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n trials x k objectives).

    A row is dominated when another feasible row is at least as good on every objective and better on one.
    Infeasible rows are never on the front.
    """
    values = np.asarray(values, dtype=float).reshape(len(values), len(directions))
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    costs = values * signs  # now smaller is better everywhere
    feasible = np.ones(len(costs), bool) if feasible is None else np.asarray(feasible, bool)
    candidates = costs[feasible]
    no_worse = (candidates[:, None, :] <= costs[None, :, :]).all(-1)
    better = (candidates[:, None, :] < costs[None, :, :]).any(-1)
    dominated = (no_worse & better).any(0)
    return feasible & ~dominated
