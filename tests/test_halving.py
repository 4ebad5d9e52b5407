"""Multi-fidelity (``search.scheduler: halving``): every trial starts cheap, the promising ones get more epochs, judged
on the front at each fidelity by Optuna's successive-halving pruner; a member of the final front trained to the full
budget."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from squeezer.search.cli import main
from squeezer.search.config.experiment import parse_config
from squeezer.search.errors import ConfigError
from squeezer.search.study.halving import SUFFIX, Halving, rungs_study
from squeezer.search.trial.run import Outcome, StoppedEarly

from conftest import digits_config, write_config
from test_study import search, stores

OBJECTIVES = {"accuracy": "maximize", "size_bytes": "minimize", "latency_ms": "minimize"}


def trial_at(rungs: optuna.Study, size: float, accuracies: list[float], latency: float = 0.05,
             rung_epochs: int = 1, reduction_factor: int = 3) -> Halving:
    """A trial of ``size`` bytes that reported ``accuracies`` epoch by epoch (and goes on), judged at rungs of
    ``rung_epochs`` x ``reduction_factor``^k epochs."""
    rule = Halving(rungs, OBJECTIVES, rung_epochs, reduction_factor, validation_count=1000)
    check = rule.watch({"size_bytes": size, "latency_ms": latency, "latency_ci_ms": 0.002})
    for epoch, accuracy in enumerate(accuracies):
        check(epoch, {"distill.loss": 1.0, "distill.val_accuracy": accuracy})
    return rule


def test_on_the_front_at_its_fidelity_a_trial_stands_at_zero_else_at_the_accuracy_it_lacks() -> None:
    rungs = rungs_study("s", optuna.storages.InMemoryStorage(), rung_epochs=100, reduction_factor=3)  # no pruning

    def every(size: float, accuracies: list[float], latency: float = 0.05) -> Halving:  # stands at epochs 1 and 2
        return trial_at(rungs, size, accuracies, latency, rung_epochs=1, reduction_factor=2)
    every(1000.0, [0.80, 0.90])
    assert every(500.0, [0.50]).last == 0.0      # cheaper than any before it: nothing to beat
    assert every(2000.0, [0.85]).last == 0.0     # dearer, but more accurate after as many epochs
    dearer = every(2000.0, [0.60, 0.70])         # dearer and less accurate: short of 0.90 after epoch 2
    assert dearer.last == pytest.approx(0.70 - 0.90 + (0.7 * 0.3 / 1000 + 0.9 * 0.1 / 1000) ** 0.5)
    assert every(1500.0, [0.795]).last == 0.0    # within the standard errors of 0.80: a tie
    as_fast = every(1000.0, [0.60], latency=0.051)  # a latency within its interval costs the same
    assert as_fast.last < 0


def test_a_trial_reports_only_at_its_rungs() -> None:
    rungs = rungs_study("s", optuna.storages.InMemoryStorage(), rung_epochs=1, reduction_factor=3)
    trial_at(rungs, 100.0, [0.5, 0.6, 0.7, 0.8, 0.9])
    (twin,) = rungs.trials
    assert sorted(twin.intermediate_values) == [1, 3] and sorted(k for k in twin.user_attrs if k != "cheap") == [
        "epoch 1", "epoch 3"]


def test_a_trial_outside_the_top_third_at_a_rung_is_stopped_saying_why() -> None:
    rungs = rungs_study("s", optuna.storages.InMemoryStorage(), rung_epochs=1, reduction_factor=3)
    for size in (100.0, 200.0, 300.0):  # three trials on the front after one epoch
        trial_at(rungs, size, [0.9])
    with pytest.raises(StoppedEarly, match=r"successive halving: after 1 epoch\(s\), val accuracy 0.5000 is 0.3"
                                           r"\d+ short of the front at that fidelity, outside the top 1/3"):
        trial_at(rungs, 400.0, [0.5])


def test_the_twin_is_told_how_its_trial_ended() -> None:
    rungs = rungs_study("s", optuna.storages.InMemoryStorage(), rung_epochs=100, reduction_factor=3)
    done, stopped = trial_at(rungs, 100.0, [0.9]), trial_at(rungs, 200.0, [0.5])
    done.end(Outcome({"accuracy": 0.9}))
    stopped.end(Outcome(None, "successive halving: ...", stopped=True))
    assert [t.state for t in rungs.trials] == [TrialState.COMPLETE, TrialState.PRUNED]


def test_a_halving_study_stops_trials_at_rungs_and_its_front_trained_the_whole_budget(tmp_path: Path,
                                                                                        capsys) -> None:
    config = digits_config()
    config["search"] = {"sampler": "random", "scheduler": "halving", "rung_epochs": 1, "reduction_factor": 3}
    path = write_config(tmp_path, config)
    assert search(path, tmp_path, 9) == 0
    printed = capsys.readouterr().out
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    stopped = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert stopped and all(t.user_attrs["stop_reason"].startswith("successive halving: after ") for t in stopped)
    assert "stopped early" in printed
    budget = config["pipeline"][0]["distill"]["epochs"] + config["pipeline"][1]["prune"]["finetune_epochs"]
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE and "baseline" not in t.user_attrs]
    assert completed and all(len(t.user_attrs["val_curve"]) == budget for t in completed)
    # the twin study lives beside it in the storage, but is no study of the user's
    assert main(["pareto", "--study-name", "digits" + SUFFIX, "--storage", stores(tmp_path)[1]]) == 2
    assert "studies there: ['digits']" in capsys.readouterr().err


@pytest.mark.parametrize("search_section, key", [
    ({"scheduler": "halving", "reduction_factor": 1}, "search.reduction_factor"),
    ({"scheduler": "none", "rung_epochs": 2}, "search.rung_epochs"),
    ({"scheduler": "halving", "rung_epochs": 0}, "search.rung_epochs"),
])
def test_bad_halving_settings_are_one_line_naming_them(search_section: dict, key: str) -> None:
    config = digits_config()
    config["search"] = search_section
    with pytest.raises(ConfigError) as err:
        parse_config(config)
    assert str(err.value).startswith(key)
