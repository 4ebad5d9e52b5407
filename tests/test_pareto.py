"""The recorded front is exactly the set of feasible recipes no other feasible one dominates beyond the noise of
measuring them; ``strict``, the plain front of every run."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import pytest

from squeezer.search.results.pareto import front_mask, pareto_mask, pareto_trials
from squeezer.search.trial.metrics import median_interval


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


# --- ties within measurement noise ------------------------------------------------------------------------------

OBJECTIVES = {"accuracy": "maximize", "size_bytes": "minimize", "latency_ms": "minimize"}


def metrics(accuracy: float, size: float, latency: float, latency_ci: float = 0.0005,
            samples: int = 500) -> dict[str, float]:
    return {"accuracy": accuracy, "accuracy_se": float(np.sqrt(accuracy * (1 - accuracy) / samples)),
            "size_bytes": size, "latency_ms": latency, "latency_ci_ms": latency_ci}


def test_a_member_dominated_but_for_latency_noise_is_off_the_front() -> None:
    # the held-back table's case: 0.83 at 96 KB "faster" by 0.0003 ms, inside the timer's confidence interval
    worse, better = metrics(0.83, 96_000, 0.0127), metrics(0.93, 47_000, 0.0130)
    assert list(front_mask([worse, better], OBJECTIVES, strict=True)) == [True, True]
    assert list(front_mask([worse, better], OBJECTIVES)) == [False, True]


def test_a_latency_gain_beyond_its_interval_is_a_real_trade_off() -> None:
    slow, fast = metrics(0.93, 47_000, 0.0300), metrics(0.83, 96_000, 0.0127)
    assert list(front_mask([slow, fast], OBJECTIVES)) == [True, True]


def test_accuracies_within_their_standard_errors_tie() -> None:
    # 0.2 points apart on 500 samples (se ~ 1.1 points): the smaller model is not beaten on accuracy
    big, small = metrics(0.902, 90_000, 0.02), metrics(0.900, 40_000, 0.02)
    assert list(front_mask([big, small], OBJECTIVES)) == [False, True]
    assert list(front_mask([big, small], OBJECTIVES, strict=True)) == [True, True]


def test_without_recorded_errors_the_front_is_the_plain_one() -> None:
    old = [{"accuracy": 0.83, "size_bytes": 96_000, "latency_ms": 0.0127},
           {"accuracy": 0.93, "size_bytes": 47_000, "latency_ms": 0.0130}]
    assert list(front_mask(old, OBJECTIVES)) == [True, True]


@pytest.mark.parametrize("seed", range(15))
def test_tolerant_front_equals_its_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 25))
    values = rng.integers(0, 8, size=(n, 2)).astype(float)
    errors = rng.choice([0.0, 0.5, 1.2], size=(n, 2))
    mask = pareto_mask(values, ["minimize", "minimize"], errors=errors)

    def beats(j: int, i: int) -> bool:  # j no worse than i (within noise) everywhere, better (beyond it) once
        margin = np.hypot(errors[i], errors[j])
        plainly = (values[j] <= values[i]).all() and (values[j] < values[i]).any()
        return bool(plainly or (values[j] <= values[i] + margin).all() and (values[j] < values[i] - margin).any())
    expected = {i for i in range(n) if not any(beats(j, i) for j in range(n) if j != i)}
    assert set(np.flatnonzero(mask)) == (expected or set(np.flatnonzero(pareto_mask(values, ["minimize"] * 2))))


def test_two_runs_of_one_recipe_are_one_entry() -> None:
    study = optuna.create_study(directions=list(OBJECTIVES.values()))
    recipe = {"student.width": 32}
    distribution = {"student.width": optuna.distributions.IntDistribution(8, 64)}
    for accuracy in (0.90, 0.81, 0.86):  # one recipe, three seeds: its median run represents it
        study.add_trial(done(recipe, distribution, metrics(accuracy, 40_000, 0.02)))
    study.add_trial(done({"student.width": 64}, distribution, metrics(0.95, 90_000, 0.03)))
    front = pareto_trials(study, OBJECTIVES)
    assert [t.user_attrs["metrics"]["accuracy"] for t in front] == [0.86, 0.95]
    assert len(pareto_trials(study, OBJECTIVES, strict=True)) == 2  # the plain front: 0.90 dominates 0.81, 0.86


def done(params: dict, distributions: dict, measured: dict[str, float]) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(params=params, distributions=distributions,
                                     values=[measured[k] for k in OBJECTIVES], user_attrs={"metrics": measured})


def test_a_latency_interval_is_the_median_s_order_statistics() -> None:
    times = [float(t) for t in range(1, 101)]  # 100 readings: the median's 95 % interval is ranks 40 and 60
    assert median_interval(times) == (41.0, 61.0)
    assert median_interval([5.0]) == (5.0, 5.0)
