"""The teachers' outputs are computed once per teacher and data: later trials and later processes load them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from squeezer.search.cli import main

from conftest import digits_config, write_config


def feature_study(tmp_path: Path) -> Path:
    config = digits_config()
    config["teacher"]["epochs"] = 3
    config["pipeline"] = [{"distill": {"epochs": 2, "feature_weight": 0.5, "weighting": "dwa",
                                       "temperature": {"float": [1.0, 8.0], "log": True}}}]
    config["search"] = {"sampler": "random", "trials": 2}
    return write_config(tmp_path, config)


def search_args(config: Path, tmp_path: Path, study: str) -> list[str]:
    return ["search", str(config), "--study-name", study, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
            "--storage", f"sqlite:///{tmp_path}/optuna.db"]


def test_a_second_trial_and_a_second_process_run_no_teacher_forward_pass(tmp_path: Path, capsys) -> None:
    config = feature_study(tmp_path)
    assert main(search_args(config, tmp_path, "first")) == 0
    computed = [line for line in capsys.readouterr().err.splitlines() if "computing outputs" in line]
    # the logits once while preparing, the hint features once in the first trial, nothing in the second
    assert len(computed) == 2 and "'logits']" in computed[0] and "'2'" in computed[1], computed

    env = {**os.environ, "SQUEEZER_CACHE": os.environ["SQUEEZER_CACHE"]}
    second = subprocess.run([sys.executable, "-m", "squeezer.search.cli", *search_args(config, tmp_path, "second")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "computing outputs" not in second.stderr
    assert "logits loaded from cache" in second.stderr and "features.2 loaded from cache" in second.stderr


def test_each_epochs_temperature_and_weights_reach_the_trials_mlflow_run(tmp_path: Path) -> None:
    assert main(search_args(feature_study(tmp_path), tmp_path, "curves") + ["--trials", "1"]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("squeezer-digits").experiment_id],
                                filter_string="tags.`squeezer.role` = 'trial'")
    for metric in ("distill.temperature", "distill.weight.soft", "distill.weight.hard", "distill.weight.feature",
                   "distill.loss.feature"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [0, 1], metric
    assert "distill.feature_weight" in run.data.params
