"""Search efficiency: Pareto-aware early stopping, and Squeezer's sampler that screens recipes before training."""

from __future__ import annotations

import datetime
import pickle
import re
import threading
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from squeezer.search.config.experiment import parse_config
from squeezer.search.study.early_stop import MIN_CURVES, ParetoStop, headroom, val_curve
from squeezer.search.errors import ConfigError
from squeezer.search.study.squeezer_sampler import WARMUP, Screen, SqueezerSampler
from squeezer.search.trial.recipe import replay_params
from squeezer.search.trial.workbench import prepare
from squeezer.search.trial.run import StoppedEarly, attempt, cheap_metrics, student

from conftest import digits_config, write_config
from test_study import runs, search, stores

OBJECTIVES = {"accuracy": "maximize", "size_bytes": "minimize", "latency_ms": "minimize"}
MEMBER = (3, {"accuracy": 0.9, "size_bytes": 1000.0, "latency_ms": 0.05})
SLOWER_AND_BIGGER = {"size_bytes": 2000.0, "latency_ms": 0.1}


def test_a_trial_beaten_on_every_objective_even_optimistically_is_stopped_naming_the_member() -> None:
    rule = ParetoStop(OBJECTIVES, [MEMBER], {("distill", 0): 0.05}, allowance=0.02)
    check = rule.watch(SLOWER_AND_BIGGER)
    assert check is not None
    with pytest.raises(StoppedEarly, match=r"after distill epoch 1: val accuracy 0.8000 \(\+0.070 allowed\) .* "
                                           r"beaten by trial 3"):
        check(0, {"distill.loss": 1.0, "distill.val_accuracy": 0.80})  # 0.80 + 0.05 + 0.02 < 0.9


def test_a_trial_that_could_still_reach_the_front_goes_on() -> None:
    rule = ParetoStop(OBJECTIVES, [MEMBER], {("distill", 0): 0.05}, allowance=0.02)
    for cheap, epoch, accuracy in [
        (SLOWER_AND_BIGGER, 0, 0.85),                          # 0.85 + 0.07 may still beat 0.9
        ({"size_bytes": 500.0, "latency_ms": 0.1}, 0, 0.1),    # smaller than the member: never dominated
        ({"size_bytes": 2000.0, "latency_ms": 0.06}, 0, 0.1),  # timed before training within the noise allowance
        (SLOWER_AND_BIGGER, 5, 0.1),                           # no finished trial reported this epoch: no headroom
    ]:
        check = rule.watch(cheap)
        assert check is not None
        check(epoch, {"distill.val_accuracy": accuracy})
    assert rule.would_stop is None


def test_nothing_is_stopped_before_a_front_and_enough_finished_trials_exist() -> None:
    assert headroom([([("distill", 0, 0.5)], 0.9)] * (MIN_CURVES - 1)) == {}
    assert ParetoStop(OBJECTIVES, [], {("distill", 0): 0.0}).watch(SLOWER_AND_BIGGER) is None


def test_the_headroom_is_the_most_any_finished_trial_gained_from_that_epoch() -> None:
    finished = [([("distill", 0, 0.5), ("distill", 1, 0.8), ("prune", 0, 0.7)], 0.85),
                ([("distill", 0, 0.7), ("distill", 1, 0.75)], 0.80),
                ([("distill", 0, 0.6)], 0.62)]
    assert headroom(finished) == pytest.approx({("distill", 0): 0.35, ("distill", 1): 0.05, ("prune", 0): 0.15})
    curves = [(0, {"distill.loss": 1.0, "distill.val_accuracy": 0.5}), (0, {"prune.val_accuracy": 0.4})]
    assert val_curve(curves) == [("distill", 0, 0.5), ("prune", 0, 0.4)]


def test_in_shadow_mode_the_verdict_is_kept_and_the_trial_goes_on() -> None:
    rule = ParetoStop(OBJECTIVES, [MEMBER], {("distill", 0): 0.0, ("distill", 1): 0.0}, shadow=True)
    check = rule.watch(SLOWER_AND_BIGGER)
    assert check is not None
    check(0, {"distill.val_accuracy": 0.5})
    check(1, {"distill.val_accuracy": 0.6})
    assert rule.would_stop is not None and rule.would_stop.startswith("stopped early after distill epoch 1:")


def test_a_real_trial_stops_after_its_first_epoch_with_its_curve_so_far(tmp_path: Path) -> None:
    bench = prepare(parse_config(digits_config()))
    params = replay_params(bench.config, {"student.depth": 1, "student.width": 32, "distill.temperature": 2.0,
                                          "distill.soft_weight": 0.5, "distill.hard_weight": 0.5, "prune.ratio": 0.0,
                                          "prune.structured": True, "quantize.bits": 32})
    unbeatable = (7, {"accuracy": 1.0, "size_bytes": 1.0, "latency_ms": 1e-9})
    rule = ParetoStop(bench.config.objectives, [unbeatable], {("distill", 0): 0.0})
    workdir = tmp_path / "trial"
    workdir.mkdir()
    outcome = attempt(bench, params, 0, workdir, watch=rule.watch)
    assert outcome.stopped and outcome.metrics is None
    assert outcome.reason.startswith("stopped early after distill epoch 1:") and "trial 7" in outcome.reason
    assert [step for step, _ in outcome.curves] == [0] and not any(workdir.iterdir())  # nothing deployed


def test_early_stopping_is_the_default_where_it_can_judge_and_refused_where_it_cannot() -> None:
    config = digits_config()
    del config["search"]["scheduler"]  # the shipped digits study lets every trial finish: the tests count them
    assert parse_config(config).search.scheduler == "pareto"
    config["objectives"] = {"f1_macro": "maximize", "size_bytes": "minimize"}
    assert parse_config(config).search.scheduler == "none"  # f1 is not what epochs report
    config["search"] = {"scheduler": "pareto"}
    with pytest.raises(ConfigError, match="search.scheduler: needs objectives whose one trained metric is accuracy"):
        parse_config(config)
    config = digits_config()
    config["search"] = {"sampler": "nsga2", "candidates": 8}
    with pytest.raises(ConfigError, match="search.candidates: is a setting of sampler squeezer"):
        parse_config(config)


@pytest.mark.parametrize("reference, message", [
    ({"f1_macro": 0.5}, "search.reference: names objectives only"),
    ({"accuracy": 1.5}, "search.reference.accuracy: must be a finite number in [0, 1]"),
    ({"size_bytes": 0}, "search.reference.size_bytes: must be a finite number > 0"),
    ({"latency_ms": "fast"}, "search.reference.latency_ms: must be a finite number > 0"),
    ([0.5, 1e6], "search.reference: must map objectives to values"),
])
def test_a_bad_hypervolume_reference_is_one_line_naming_it(reference: object, message: str) -> None:
    config = digits_config()
    config["search"]["reference"] = reference
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(config)
    config["search"]["reference"] = {"accuracy": 0.5, "size_bytes": 1e5}
    assert parse_config(config).search.reference == {"accuracy": 0.5, "size_bytes": 1e5}


def test_squeezer_sampler_is_the_default_where_it_can_judge_and_nsga2_elsewhere() -> None:
    config = digits_config()
    config["search"] = {"trials": 3}
    assert (parse_config(config).search.sampler, parse_config(config).search.scheduler) == ("squeezer", "pareto")
    config["search"] = {"backend": "ray"}  # Ray stops trials early with asha, when asked
    assert (parse_config(config).search.sampler, parse_config(config).search.scheduler) == ("squeezer", "none")
    config["objectives"] = {"f1_macro": "maximize", "size_bytes": "minimize"}
    assert parse_config(config).search.sampler == "nsga2"
    config["search"] = {"backend": "ray", "scheduler": "pareto"}
    with pytest.raises(ConfigError, match="search.scheduler: needs objectives"):
        parse_config(config)


def test_squeezer_sampler_screens_recipes_so_no_trained_one_breaks_the_size_budget(tmp_path: Path, capsys) -> None:
    config = digits_config()
    config["search"] = {"sampler": "squeezer", "trials": 9, "candidates": 6, "scheduler": "pareto"}
    config["constraints"] = {"size_bytes": {"max": 12000}}
    assert search(write_config(tmp_path, config), tmp_path, 9) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    trials = sorted(study.trials, key=lambda t: t.number)
    screened = [t for t in trials if t.user_attrs.get("screened")]
    assert screened and all(t.number >= WARMUP for t in screened)  # random trials first, to learn from
    # size is known before training, so a screened recipe never breaks the budget
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in screened)
    assert all(t.user_attrs["metrics"]["size_bytes"] <= 12000 for t in screened if t.state == TrialState.COMPLETE)
    # a trial stopped early: PRUNED with its reason in the storage, KILLED with it in MLflow, counted in the summary
    stopped = {t.number: t.user_attrs["stop_reason"] for t in trials if t.state == TrialState.PRUNED}
    killed = {int(r.data.tags["squeezer.trial"]): r.data.tags["squeezer.error"]
              for r in runs(tmp_path, "trial") if r.info.status == "KILLED"}
    assert killed == stopped and all(reason.startswith("stopped early after") for reason in stopped.values())
    assert all(f"[trial {n} · " in out and reason in out for n, reason in stopped.items())
    (parent,) = runs(tmp_path, "study")
    assert parent.data.metrics["trials.stopped_early"] == len(stopped)
    history = MlflowClient(stores(tmp_path)[0]).get_metric_history(parent.info.run_id, "pareto.hypervolume")
    assert {m.step for m in history} == set(range(1, sum(t.state == TrialState.COMPLETE for t in trials) + 1))


def test_squeezer_sampler_never_proposes_a_recipe_already_run(tmp_path: Path) -> None:
    # a space of 8 recipes, so that the screening must choose among ones already run; 7 trials (all 8 would run as a
    # grid: every recipe once, no sampler)
    config = digits_config()
    config["student"] = {"family": "mlp", "depth": 1, "width": {"choice": [16, 32]}}
    config["pipeline"] = [{"distill": {"temperature": 2.0, "soft_weight": 0.5, "hard_weight": 0.5, "epochs": 2}},
                          {"prune": {"ratio": {"choice": [0.0, 0.5]}, "finetune_epochs": 0}},
                          {"quantize": {"bits": {"choice": [32, 8]}}}]
    config["search"] = {"sampler": "squeezer", "trials": 7, "candidates": 8, "scheduler": "none"}
    assert search(write_config(tmp_path, config), tmp_path, 7) == 0
    trials = sorted(optuna.load_study(study_name="digits", storage=stores(tmp_path)[1]).trials, key=lambda t: t.number)
    screened = [t for t in trials if t.user_attrs.get("screened")]
    assert screened
    for trial in screened:
        assert all(trial.params != earlier.params for earlier in trials[:trial.number]), trial.number


def test_squeezers_sampler_is_an_optuna_sampler_that_any_study_runs_and_tune_can_save() -> None:
    sampler = SqueezerSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1) + trial.suggest_int("n", 1, 3), n_trials=4)
    assert isinstance(sampler, optuna.samplers.BaseSampler) and len(study.trials) == 4
    assert not any(sampler.screened(t.number) for t in study.trials)  # no screen yet: random draws
    sampler.use(threading.Lock())  # a screen holds what cannot be pickled (an in-memory study, the data)
    assert isinstance(pickle.loads(pickle.dumps(sampler)), SqueezerSampler)  # Tune pickles its searcher's sampler


def test_before_training_only_what_the_study_searches_on_is_timed() -> None:
    config = digits_config()
    config["objectives"] = {"accuracy": "maximize", "size_bytes": "minimize"}
    bench = prepare(parse_config(config))
    params = replay_params(bench.config, {"student.depth": 1, "student.width": 32, "distill.temperature": 2.0,
                                          "distill.soft_weight": 0.5, "distill.hard_weight": 0.5, "prune.ratio": 0.0,
                                          "prune.structured": True, "quantize.bits": 32})
    model, ctx = student(bench, params, 0)
    assert set(cheap_metrics(bench, model, params, ctx)) == {"size_bytes", "params", "flops"}  # counted, not timed
    config["objectives"]["latency_ms"] = "minimize"
    bench = prepare(parse_config(config))
    timed = cheap_metrics(bench, model, params, ctx)
    assert {"latency_ms", "latency_ci_ms"} <= set(timed) and "latency_batch_ms" not in timed


def test_the_batch_is_timed_in_full_only_where_it_is_searched_on() -> None:
    config = digits_config()
    assert parse_config(config).measure.batch_rounds == config["measure"]["repeats"] // 5
    config["objectives"] = {"accuracy": "maximize", "throughput": "maximize"}
    assert parse_config(config).measure.batch_rounds == config["measure"]["repeats"]
    config["measure"]["batch_repeats"] = 7
    assert parse_config(config).measure.batch_rounds == 7


def known_trials(screen: Screen, seconds: float, count: int = WARMUP + 3) -> list[optuna.trial.FrozenTrial]:
    """Finished trials of random recipes, each ``seconds`` long, with made-up metrics."""
    start = datetime.datetime(2026, 1, 1)
    trials = []
    for number in range(count):
        params = screen.draw([])
        metrics = {"accuracy": 0.5 + 0.04 * number, "size_bytes": 1000.0 + 100 * number, "params": 100.0 + number,
                   "flops": 200.0 + number, "latency_ms": 0.05, "latency_ci_ms": 0.001}
        trials.append(optuna.trial.FrozenTrial(
            number=number, state=TrialState.COMPLETE, value=None, values=[0.0, 0.0, 0.0], datetime_start=start,
            datetime_complete=start + datetime.timedelta(seconds=seconds), params=params,
            distributions={k: screen.space[k] for k in params}, user_attrs={"metrics": metrics}, system_attrs={},
            intermediate_values={}, trial_id=number))
    return trials


def test_screening_is_held_to_a_tenth_of_a_trials_wall_time() -> None:
    bench = prepare(parse_config(digits_config()))
    teacher = {"accuracy": 0.97, "size_bytes": 100_000.0, "latency_ms": 0.1}
    slow = Screen(bench, teacher, seed=0, candidates=4)
    started = time.perf_counter()
    assert slow.propose(known_trials(slow, seconds=100.0), []) is not None  # 10 s to spend: all 4 measured
    assert time.perf_counter() - started < 10.0 and slow.cost is not None
    quick = Screen(bench, teacher, seed=0, candidates=16)
    done = known_trials(quick, seconds=0.001)  # 0.1 ms to spend: one candidate, then no more screening
    assert quick.propose(done, []) is not None
    assert quick.propose(done, []) is None  # a random draw: screening would cost more than the trial is worth
