"""The recorded front is exactly the set of feasible trials no other feasible trial dominates."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from squeezer.search.results.pareto import pareto_mask


def brute_force(values: list[tuple[float, ...]], directions: list[str], feasible: list[bool]) -> set[int]:
    """The definition, written out: i is on the front unless some feasible j is no worse everywhere, better once."""
    def better_or_equal(a: float, b: float, d: str) -> bool:
        return a >= b if d == "maximize" else a <= b

    front = set()
    for i, vi in enumerate(values):
        if not feasible[i]:
            continue
        dominated = any(
            feasible[j] and j != i
            and all(better_or_equal(vj[k], vi[k], d) for k, d in enumerate(directions))
            and any(vj[k] != vi[k] for k in range(len(directions)))
            for j, vj in enumerate(values))
        if not dominated:
            front.add(i)
    return front


@pytest.mark.parametrize("seed", range(25))
def test_front_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 40)), int(rng.integers(1, 4))
    values = rng.integers(0, 6, size=(n, k)).astype(float)  # small integers, so ties and duplicates occur
    directions = [str(d) for d in rng.choice(["maximize", "minimize"], size=k)]
    feasible = rng.random(n) > 0.2
    mask = pareto_mask(values, directions, feasible)
    assert set(np.flatnonzero(mask)) == brute_force([tuple(v) for v in values], directions, list(feasible))


def test_accuracy_size_latency_example() -> None:
    # accuracy up, size and latency down
    trials = [(0.95, 100, 1.0), (0.94, 50, 1.0), (0.93, 60, 1.1), (0.95, 100, 0.5), (0.90, 10, 2.0)]
    mask = pareto_mask(np.array(trials), ["maximize", "minimize", "minimize"])
    assert list(np.flatnonzero(mask)) == [1, 3, 4]


def test_identical_trials_are_both_on_the_front() -> None:
    assert pareto_mask(np.array([[1.0, 2.0], [1.0, 2.0]]), ["maximize", "minimize"]).all()


def test_infeasible_trials_never_enter_the_front_nor_dominate() -> None:
    values = np.array([[0.99, 1.0], [0.90, 5.0]])
    mask = pareto_mask(values, ["maximize", "minimize"], feasible=np.array([False, True]))
    assert list(mask) == [False, True]


def test_every_permutation_gives_the_same_front() -> None:
    values = np.array([[3, 1], [1, 3], [2, 2], [1, 1], [3, 3]], dtype=float)
    expected = {tuple(v) for v in values[pareto_mask(values, ["minimize", "minimize"])]}
    for perm in itertools.permutations(range(len(values))):
        shuffled = values[list(perm)]
        assert {tuple(v) for v in shuffled[pareto_mask(shuffled, ["minimize", "minimize"])]} == expected
