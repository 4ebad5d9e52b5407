"""Several `squeezer search` processes on one study and one shared storage cooperate on it."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from squeezer.search import hardware
from squeezer.search.cli import main
from squeezer.search.config.experiment import parse_config

from conftest import DIGITS_YAML, digits_config, write_config
from test_study import runs, stores


def test_two_processes_share_one_study_without_losing_or_duplicating_trials(tmp_path: Path) -> None:
    tracking, storage = stores(tmp_path)
    config = digits_config()  # a light teacher: what is shared and counted matters here, not how well they train;
    config["teacher"]["epochs"] = 10  # trials enough for the second process, which starts no sooner, to take some
    command = [sys.executable, "-m", "squeezer.search.cli", "search", str(write_config(tmp_path, config)),
               "--trials", "10", "--storage", storage, "--tracking-uri", tracking]
    workers = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [log[-3000:] for log in logs]

    study = optuna.load_study(study_name="digits", storage=storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 10
    assert len({t.number for t in study.trials}) == len(study.trials)  # no duplicate trial numbers
    assert all(t.state.name != "RUNNING" for t in study.trials)
    assert all("[trial" in log for log in logs)  # both processes ran trials

    (parent,) = runs(tmp_path, "study")
    finished = [r for r in runs(tmp_path, "trial") if r.info.status == "FINISHED"]
    assert sorted(int(r.data.tags["squeezer.trial"]) for r in finished) == sorted(t.number for t in complete)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in finished)


def test_jobs_start_worker_processes_that_join_the_study_and_stop_with_it(tmp_path: Path, capsys) -> None:
    tracking, storage = stores(tmp_path)
    assert main(["search", str(DIGITS_YAML), "--trials", "3", "--jobs", "2", "--storage", storage,
                 "--tracking-uri", tracking, "--study-name", "jobs"]) == 0
    assert "jobs: this process and 1 worker process(es) run trials at once" in capsys.readouterr().out

    study = optuna.load_study(study_name="jobs", storage=storage)
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 3  # the target, not one trial more
    assert study.user_attrs["recommended"] is not None  # the front, recorded once by the study's process
    log = Path(tempfile.gettempdir()) / "squeezer-jobs" / "jobs.1.log"
    assert "study 'jobs':" in log.read_text()  # the worker joined the study (and left when it was done)
    client = MlflowClient(tracking)
    (parent,) = client.search_runs([client.get_experiment_by_name("squeezer-digits").experiment_id],
                                   "tags.`squeezer.study` = 'jobs' and tags.`squeezer.role` = 'study'")
    assert parent.info.status == "FINISHED"


def test_each_job_trains_with_its_share_of_the_cores_unless_told() -> None:
    assert hardware.threads(None, 1) == hardware.cores()
    assert hardware.threads(None, 2 * hardware.cores()) == 1  # never none
    assert hardware.threads(3, 8) == 3  # training.threads, as given


def test_a_study_resumes_with_other_threads_they_change_its_speed_not_its_results() -> None:
    config = digits_config()
    training = config.get("training", {})
    assert parse_config({**config, "training": {**training, "threads": 1}}).digest() == parse_config(config).digest()
    assert parse_config({**config, "training": {**training, "batch_size": 7}}).digest() != parse_config(config).digest()
