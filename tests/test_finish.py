"""``squeezer finish``: the picked member's recipe trained again with a longer budget — the same student, pipeline and
seed — logged beside the study's trials (its curve, deployed metrics and test quality) and exported; for language
models (steps) and classifiers (epochs); a plateau stops it and keeps the best weights; bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import digits_config, one_line, write_config
from squeezer.compressors.training import Plateau
from squeezer.search.cli import main
from test_language_models import experiment as tiny_lm
from test_study import runs, stores


def test_a_plateau_stops_after_patience_evaluations_without_improvement_and_keeps_the_best_weights() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    plateau = Plateau(patience=2, higher_is_better=False)  # a perplexity: lower is better
    stopped = []
    for value, weight in [(9.0, 1.0), (7.0, 2.0), (7.5, 3.0), (7.2, 4.0), (6.0, 5.0)]:
        model.weight.data.fill_(weight)
        stopped.append(plateau.stops(model, value))
    assert stopped == [False, False, False, True, False]  # 7.5 and 7.2 do not beat 7.0: two in a row
    assert plateau.best(model).weight.item() == 5.0  # the last, 6.0, was best of all
    never = Plateau(patience=0, higher_is_better=True)
    assert not any(never.stops(model, v) for v in (0.9, 0.5, 0.1, 0.0))
    assert never.best(model) is model and model.weight.item() == 5.0


def finished_run(tmp_path: Path, study: str, number: int):  # noqa: ANN201 - an MLflow run
    (run,) = [r for r in runs(tmp_path, "finish", study) if r.data.tags["squeezer.trial"] == str(number)]
    return run


def test_finish_trains_a_language_model_members_recipe_longer_and_exports_it(made, tmp_path, capsys) -> None:
    import onnxruntime_genai as og

    tracking, storage = stores(tmp_path)
    path = tiny_lm(tmp_path, made, search={"sampler": "random"})
    assert main(["search", str(path), "--trials", "3", "--tracking-uri", tracking, "--storage", storage]) == 0
    (trial,) = [r for r in runs(tmp_path, "trial", "tiny-lm") if r.data.tags["squeezer.trial"] == "2"]
    capsys.readouterr()
    assert main(["finish", str(path), "--trial", "2", "--steps", "48", "--out", str(tmp_path / "done"),
                 "--tracking-uri", tracking, "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "finished trial 2: perplexity=" in out and "written to" in out
    run = finished_run(tmp_path, "tiny-lm", 2)
    assert run.info.status == "FINISHED" and run.data.params["lm_distill.steps"] == "48"
    same = [k for k in trial.data.params if k != "lm_distill.steps"]
    assert {k: run.data.params[k] for k in same} == {k: trial.data.params[k] for k in same}  # the same recipe
    history = MlflowClient(tracking).get_metric_history(run.info.run_id, "lm_distill.val_perplexity")
    assert len(history) == 48 // 6  # every evaluation, as it went
    m = run.data.metrics
    assert m["perplexity"] < trial.data.metrics["perplexity"] and m["lm_distill.steps_trained"] == 48
    assert {"test_perplexity", "size_bytes", "latency_ms"} <= set(m)
    og.Model(str(tmp_path / "done"))  # the default format: the folder onnxruntime_genai loads
    assert "finish t02" in (tmp_path / "done" / "README.md").read_text()


def test_finish_until_a_plateau_stops_before_its_cap(made, tmp_path) -> None:
    tracking, storage = stores(tmp_path)
    path = tiny_lm(tmp_path, made, search={"sampler": "random"})
    assert main(["search", str(path), "--trials", "3", "--tracking-uri", tracking, "--storage", storage]) == 0
    assert main(["finish", str(path), "--trial", "2", "--until-plateau", "--steps", "3000", "--patience", "1",
                 "--tracking-uri", tracking, "--storage", storage]) == 0
    m = finished_run(tmp_path, "tiny-lm", 2).data.metrics
    assert m["lm_distill.steps_trained"] < 3000


def digits_study(tmp_path: Path, epochs: int) -> tuple[Path, str, str]:
    """Two random trials of the digits study at ``epochs`` of distillation: its file and stores."""
    tracking, storage = stores(tmp_path)
    config = digits_config()
    config["pipeline"][0]["distill"]["epochs"] = epochs
    config["search"] = {"sampler": "random", "scheduler": "none"}
    path = write_config(tmp_path, config)
    assert main(["search", str(path), "--trials", "2", "--tracking-uri", tracking, "--storage", storage]) == 0
    return path, tracking, storage


def test_finish_trains_a_classifier_members_recipe_for_more_epochs(tmp_path) -> None:
    path, tracking, storage = digits_study(tmp_path, epochs=3)
    assert main(["finish", str(path), "--trial", "1", "--epochs", "9", "--out", str(tmp_path / "done"),
                 "--tracking-uri", tracking, "--storage", storage]) == 0
    run = finished_run(tmp_path, "digits", 1)
    assert run.data.params["distill.epochs"] == "9"
    history = MlflowClient(tracking).get_metric_history(run.info.run_id, "distill.val_accuracy")
    assert len(history) == 9
    assert {"accuracy", "test_accuracy", "size_bytes"} <= set(run.data.metrics)
    assert (tmp_path / "done" / "model.onnx").stat().st_size == run.data.metrics["size_bytes"]


@pytest.mark.parametrize("flags, key", [
    (["--trial", "1", "--steps", "10"], "--steps: is a language model's budget; this study's is --epochs"),
    (["--trial", "1"], "--epochs: is needed"),
    (["--trial", "7", "--epochs", "4"], "--trial: must be a trial number"),
    (["--trial", "1", "--epochs", "0"], "--epochs: must be an integer in [1,"),
    (["--trial", "1", "--epochs", "4", "--patience", "0", "--until-plateau"], "--patience"),
    (["--trial", "1", "--epochs", "4", "--study-name", "other"], "--study-name: no such study"),
], ids=["steps for a classifier", "no budget", "no such trial", "zero epochs", "no patience", "no such study"])
def test_bad_finish_input_is_one_line_and_trains_nothing(tmp_path, capsys, flags, key) -> None:
    path, tracking, storage = digits_study(tmp_path, epochs=1)
    capsys.readouterr()
    assert main(["finish", str(path), *flags, "--tracking-uri", tracking, "--storage", storage]) == 2
    one_line(capsys.readouterr().err, key)
    assert not runs(tmp_path, "finish")
