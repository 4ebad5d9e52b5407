"""A study survives crashes: the study storage decides what finished, and MLflow is reconciled with it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest

from squeezer.search.config.experiment import load_config
from squeezer.search.results.tracking import Tracker
from squeezer.search.trial.workbench import prepare
from squeezer.search.trial.run import attempt

from conftest import DIGITS_YAML
from test_study import runs, search, stores


class Crash(BaseException):
    """The process dying at an exact point (like kill -9, nothing after it runs)."""


def test_a_trial_told_to_the_storage_but_not_ended_in_mlflow_ends_finished_on_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    end = Tracker.end

    def die_before_ending_a_finished_trial(self: Tracker, run_id, status: str, reason: str = "") -> None:
        if status == "FINISHED" and not isinstance(run_id, str):  # a trial's run (the parent's id is a str)
            self.flush()  # what was queued before the crash point is written; nothing after it
            raise Crash
        end(self, run_id, status, reason)

    monkeypatch.setattr(Tracker, "end", die_before_ending_a_finished_trial)
    with pytest.raises(Crash):
        search(DIGITS_YAML, tmp_path, 2)
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    assert [t.state.name for t in study.trials] == ["COMPLETE"]  # the storage has the result ...
    assert [r.info.status for r in runs(tmp_path, "trial")] == ["RUNNING"]  # ... MLflow was not told

    monkeypatch.setattr(Tracker, "end", end)
    assert search(DIGITS_YAML, tmp_path, 2) == 0
    trial_runs = runs(tmp_path, "trial")
    assert sorted(r.info.status for r in trial_runs) == ["FINISHED", "FINISHED"]
    first = next(r for r in trial_runs if r.data.tags["squeezer.trial"] == "0")
    assert "squeezer.error" not in first.data.tags
    assert first.data.metrics["accuracy"] == study.trials[0].user_attrs["metrics"]["accuracy"]
    assert first.data.tags["pareto"] in ("true", "false")
    complete = {t.number for t in study.trials if t.state.name == "COMPLETE"}
    assert complete == {int(r.data.tags["squeezer.trial"]) for r in trial_runs if r.info.status == "FINISHED"}


def test_a_student_that_cannot_fit_in_memory_is_refused_before_allocation(tmp_path: Path) -> None:
    bench = prepare(load_config(DIGITS_YAML))
    huge = {"student": {"family": "mlp", "depth": 3, "width": 300_000}}  # ~1.8e11 weights, ~3 TB to train
    outcome = attempt(bench, huge, seed=0, workdir=tmp_path)
    assert outcome.metrics is None
    assert "student: needs about" in outcome.reason and "GiB of memory available" in outcome.reason


def test_another_machines_trial_counts_as_running_until_its_heartbeat_falls_silent(tmp_path: Path) -> None:
    assert search(DIGITS_YAML, tmp_path, 1) == 0
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    live, silent = study.ask(), study.ask()
    live.set_user_attr("owner", "other-machine:7")
    live.set_user_attr("heartbeat", time.time())
    silent.set_user_attr("owner", "dead-machine:7")
    silent.set_user_attr("heartbeat", time.time() - 600)

    def other_machine_finishes() -> None:  # the live trial ends on its machine while we wait for it
        time.sleep(3)
        live.set_user_attr("metrics", {"accuracy": 0.5, "size_bytes": 1000.0, "latency_ms": 0.1,
                                       "latency_p90_ms": 0.1, "throughput": 1.0, "params": 10.0})
        study.tell(live, [0.5, 1000.0, 0.1])

    finisher = threading.Thread(target=other_machine_finishes)
    finisher.start()
    assert search(DIGITS_YAML, tmp_path, 3) == 0  # 1 done + 1 ours + the live one: no fourth trial
    finisher.join()
    states = [t.state.name for t in optuna.load_study(study_name="digits", storage=stores(tmp_path)[1]).trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]  # the silent one failed as interrupted
