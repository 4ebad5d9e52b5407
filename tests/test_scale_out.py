"""Several `squeezer search` processes on one study and one shared storage cooperate on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna

from conftest import DIGITS_YAML
from test_study import runs, stores


def test_two_processes_share_one_study_without_losing_or_duplicating_trials(tmp_path: Path) -> None:
    tracking, storage = stores(tmp_path)
    command = [sys.executable, "-m", "squeezer.search.cli", "search", str(DIGITS_YAML), "--trials", "6",
               "--storage", storage, "--tracking-uri", tracking]
    workers = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [log[-3000:] for log in logs]

    study = optuna.load_study(study_name="digits", storage=storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6
    assert len({t.number for t in study.trials}) == len(study.trials)  # no duplicate trial numbers
    assert all(t.state.name != "RUNNING" for t in study.trials)
    assert all("[trial" in log for log in logs)  # both processes ran trials

    (parent,) = runs(tmp_path, "study")
    finished = [r for r in runs(tmp_path, "trial") if r.info.status == "FINISHED"]
    assert sorted(int(r.data.tags["squeezer.trial"]) for r in finished) == sorted(t.number for t in complete)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in finished)
