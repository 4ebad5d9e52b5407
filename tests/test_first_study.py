"""A new user's first study: the space searched by default (the same from a file and from `compress()`), printed at
the start; a finite space run once and stopped; repeats reported as mean ± std; a budget no recipe can meet refused
before anything is written; and a start that prints nothing the user cannot act on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from squeezer.search import api
from squeezer.search.cli import main
from squeezer.search.config.experiment import parse_config
from squeezer.search.data.text import tokenize
from squeezer.search.trial.recipe import joint_distributions, recipe_count

from conftest import digits_config
from test_user_models import experiment

SQUEEZER = Path(sys.executable).parent / "squeezer"
#: What a study's start printed once and a user could do nothing about.
NOISE = ("Warning", "zero-element", "torchvision's C++", "Token indices sequence length", "worker processes",
         "INFO mlflow", "Traceback")


def own_image_study(where: Path, **changes: object) -> Path:
    """The user's factory teacher on an image folder, two families named without settings, no pipeline."""
    config = {**experiment(where), "student": {"family": {"choice": {"teacher": {}, "cnn": {}}}}, **changes}
    config.pop("pipeline")
    path = where / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_family_or_step_named_without_settings_searches_its_defaults() -> None:
    config = parse_config({"name": "x", "data": {"name": "digits"}, "teacher": {"family": "mlp"},
                           "student": {"family": {"choice": {"teacher": {}, "cnn": {}}}}})
    searched = set(joint_distributions(config))
    assert {"student.family", "student.family.cnn.depth", "student.family.cnn.channels", "student.family.cnn.kernel",
            "student.family.cnn.hidden", "distill.temperature", "distill.soft_weight", "distill.hard_weight",
            "prune.ratio", "quantize.bits"} == searched
    bare = parse_config({"name": "x", "data": {"name": "digits"}, "teacher": {"family": "mlp"},
                         "student": {"family": "mlp"}, "pipeline": ["distill", {"prune": {}}, "quantize"]})
    assert {"student.depth", "student.width", "prune.ratio", "quantize.bits"} <= set(joint_distributions(bare))
    fixed = parse_config({**digits_config(), "student": {"family": "mlp", "width": 32},
                          "pipeline": [{"quantize": {"bits": 8}}]})
    assert joint_distributions(fixed) == {} and recipe_count(fixed) == 1  # what the user set is what runs


def test_compress_without_a_config_searches_what_a_file_without_a_student_or_pipeline_does() -> None:
    """One default for both ways in: what is left unsaid is searched, the student included."""
    from_file = parse_config({"name": "x", "data": {"name": "digits"}, "teacher": {"family": "mlp"}})
    from_api = parse_config({**api.DEFAULTS, "data": {"name": "digits"}, "teacher": {"family": "mlp"}})
    assert joint_distributions(from_file) == joint_distributions(from_api)
    assert len(joint_distributions(from_api)) == 8  # family, mlp depth and width, T and two weights, ratio, bits


def test_a_study_prints_its_space_and_stops_when_every_recipe_has_run(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    config = {**digits_config(), "student": {"family": "mlp", "depth": 1, "width": {"choice": [16, 32]}},
              "pipeline": [{"distill": {"epochs": 2}}, {"quantize": {"bits": {"choice": [32, 8]}}}],
              "search": {"sampler": "random", "trials": 14, "scheduler": "none"}}
    path = tmp_path / "finite.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path)]) == 0
    out = capsys.readouterr().out
    assert "search space: 2 knob(s), 4 distinct recipe(s)" in out
    assert "student.width  one of 16, 32" in out and "quantize.bits  one of 32, 8" in out
    assert "every recipe of the space has run (4 trial(s))" in out
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{tmp_path}/squeezer.db")
    recipes = [(t.params["student.width"], t.params["quantize.bits"]) for t in study.trials]
    assert sorted(recipes) == [(16, 8), (16, 32), (32, 8), (32, 32)]  # each once, not 14 trials
    assert all(t.state.name == "COMPLETE" for t in study.trials)


def test_repeats_run_each_recipe_with_its_own_seed_and_report_the_spread(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    config = {**digits_config(), "student": {"family": "mlp", "depth": 1, "width": 16},
              "pipeline": [{"distill": {"epochs": 2, "temperature": {"float": [1.0, 4.0]}}}],
              "search": {"sampler": "random", "trials": 4, "scheduler": "none", "repeats": 2}}
    path = tmp_path / "repeats.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path)]) == 0
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{tmp_path}/squeezer.db")
    temperatures = sorted(t.params["distill.temperature"] for t in study.trials)
    assert len(temperatures) == 4 and temperatures[0] == temperatures[1] and temperatures[2] == temperatures[3]
    out = capsys.readouterr().out
    assert "Recipes run with 2 seeds (mean ± standard deviation):" in out
    lines = [line for line in out.splitlines() if line.startswith("  trials ") and "accuracy" in line]
    assert len(lines) == 2 and all(" ± " in line for line in lines)


def test_a_budget_no_recipe_can_meet_is_refused_before_anything_is_written(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    config = {**digits_config(), "constraints": {"size_bytes": {"max": 200}}}  # the user meant 200 KB
    path = tmp_path / "budget.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the teacher's training lines: one line, naming budget and value
    assert last.startswith("squeezer: error: constraints.size_bytes.max: cannot be met by any recipe of the space: "
                           "the smallest reachable is ") and last.endswith("but got 200.0"), last
    assert "Traceback" not in err
    assert not (tmp_path / "squeezer.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_study_start_prints_nothing_a_user_cannot_act_on(tmp_path: Path) -> None:
    path = own_image_study(tmp_path, search={"trials": 3, "scheduler": "none"})
    done = subprocess.run([str(SQUEEZER), "search", str(path)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "SQUEEZER_CACHE": str(tmp_path / "cache")}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout + done.stderr
    assert [noise for noise in NOISE if noise in printed] == [], printed[-3000:]
    assert "search space: 10 knob(s), infinite (float ranges)" in done.stdout


def test_cutting_long_documents_as_asked_warns_of_nothing(capfd: pytest.CaptureFixture) -> None:
    from squeezer.search.models import text

    tokenizer = text.tokenizer(text.DEFAULT_MODEL)
    ids = tokenize(["word " * 2000], tokenizer, 64, "head_tail")
    assert ids.shape == (1, 64)
    captured = capfd.readouterr()
    assert "Token indices sequence length" not in captured.out + captured.err


def test_compress_takes_a_mapping_without_a_name(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    result = api.compress({"pipeline": [{"quantize": {"bits": 8}}], "search": {"trials": 1}}, teacher=teacher,
                          train=(x[:1200].astype("float32"), y[:1200]), val=(x[1200:1500].astype("float32"),
                                                                             y[1200:1500]), quiet=True)
    assert result.study_name == api.DEFAULTS["name"] and len(result.front) >= 1


def test_compress_quiet_prints_nothing_at_all(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """Every line of a study goes through one printer: the data, the teacher and its cached outputs too."""
    config = {**digits_config(), "student": {"family": "mlp", "depth": 1, "width": 16},
              "pipeline": [{"distill": {"epochs": 1}}], "search": {"sampler": "random", "trials": 1}}
    api.compress(config, quiet=True, storage=f"sqlite:///{tmp_path}/s.db", tracking_uri=f"sqlite:///{tmp_path}/m.db")
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", (captured.out + captured.err)[-2000:]


def test_every_line_is_a_logging_record_a_users_handlers_can_route(tmp_path: Path, capfd: pytest.CaptureFixture,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Sent on to the application's logging (propagate), every line reaches its handlers — results and what the
    study is doing, each from its module's logger — and the printer steps aside; ``quiet`` is a level: warnings
    only."""
    import logging

    config = {**digits_config(), "student": {"family": "mlp", "depth": 1, "width": 16},
              "pipeline": [{"distill": {"epochs": 1}}], "search": {"sampler": "random", "trials": 1}}
    squeezer = logging.getLogger("squeezer")
    squeezer.propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="squeezer"):
            api.compress(config, storage=f"sqlite:///{tmp_path}/s.db", tracking_uri=f"sqlite:///{tmp_path}/m.db")
        routed = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
        captured = capfd.readouterr()
        assert "[trial 0" not in captured.out and "Pareto front" not in captured.out  # the printer stepped aside
        assert any(name == "squeezer.results" and message.startswith("[trial 0") for name, _, message in routed)
        assert any(name == "squeezer.results" and "Pareto front" in message for name, _, message in routed)
        assert any(name.startswith("squeezer.search.trial") and message.startswith("teacher")
                   for name, _, message in routed), routed
        caplog.clear()
        api.compress({**config, "name": "quiet"}, quiet=True, storage=f"sqlite:///{tmp_path}/s.db",
                     tracking_uri=f"sqlite:///{tmp_path}/m.db")
        assert all(r.levelno >= logging.WARNING for r in caplog.records)
    finally:
        squeezer.propagate = False
    api.compress({**config, "name": "printed"}, storage=f"sqlite:///{tmp_path}/s.db",
                 tracking_uri=f"sqlite:///{tmp_path}/m.db")
    assert "[trial 0" in capfd.readouterr().out  # by default, the printer prints them
