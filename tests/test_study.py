"""End to end: one config -> an Optuna study -> MLflow parent and child runs -> the Pareto front."""

from __future__ import annotations

import copy
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import optuna
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from torch import nn

from squeezer import compressors
from squeezer.compressors import Compressor, CompressorConfig, InvalidConfig, TrialContext
from squeezer.search.cli import main
from squeezer.search.results.pareto import pareto_trials
from squeezer.search.runtime import deploy, export
from squeezer.search.runtime.eager import EagerModel
from squeezer.search.runtime.ort import OnnxModel

from conftest import DIGITS_YAML, digits_config, load_data, one_line, write_config


def stores(tmp_path: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"


def search(config: Path, tmp_path: Path, trials: int, *extra: str) -> int:
    tracking, storage = stores(tmp_path)
    return main(["search", str(config), "--trials", str(trials), "--tracking-uri", tracking, "--storage", storage,
                 *extra])


def runs(tmp_path: Path, role: str, study: str = "digits") -> list:
    client = MlflowClient(stores(tmp_path)[0])
    experiment = client.get_experiment_by_name(f"squeezer-{study}")  # named after the experiment, as the study
    return client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.`squeezer.study` = '{study}' and tags.`squeezer.role` = '{role}'")


def test_search_logs_one_parent_and_a_child_per_trial_with_the_pareto_front(tmp_path: Path, capsys) -> None:
    assert search(DIGITS_YAML, tmp_path, 4) == 0
    out = capsys.readouterr().out
    assert "[trial 3 · 4/4]" in out and "Pareto front" in out  # its number, then how far the study is
    assert "\r" not in out  # not a terminal: plain lines, no bars

    (parent,), children = runs(tmp_path, "study"), runs(tmp_path, "trial")
    assert len(children) == 4
    config = digits_config()
    splits = load_data(config["data"], config["seed"])
    client = MlflowClient(stores(tmp_path)[0])
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {"accuracy", "f1_macro", "size_bytes", "latency_ms", "latency_raw_ms", "latency_p90_ms",
                "latency_batch_ms", "latency_batch_p90_ms", "throughput", "params", "flops"} <= set(child.data.metrics)
        assert {"student.width", "distill.temperature", "prune.ratio", "quantize.bits"} <= set(child.data.params)
        assert child.data.tags["pareto"] in ("true", "false")
        assert len(client.get_metric_history(child.info.run_id, "distill.loss")) == 15  # one point per epoch
        folder = Path(client.download_artifacts(child.info.run_id, "", str(tmp_path / child.info.run_id)))
        assert {"model.onnx", "student.pt", "architecture.json"} <= {p.name for p in folder.iterdir()}
        # size is the deployed file's size; the export reloads to the same accuracy, as ONNX and as torch
        assert (folder / "model.onnx").stat().st_size == child.data.metrics["size_bytes"]
        assert accuracy(OnnxModel(folder / "model.onnx"), splits) == child.data.metrics["accuracy"]
        reloaded = deploy(export.load(folder, splits.input_shape, splits.num_classes, realised=False),
                          "onnxruntime", tmp_path / "again", splits.val_x[:1], spec=export.spec(folder))
        assert accuracy(reloaded, splits) == child.data.metrics["accuracy"]
        # one trial number everywhere: the tag, the run name (which also says the recipe), the progress line
        number = int(child.data.tags["squeezer.trial"])
        assert child.info.run_name.startswith(f"t{number:02d} mlp ")
        assert child.info.run_name.rsplit(" · ", 1)[1] in ("fp32", "fp16", "int8")
        assert f"[trial {number} · " in out
        if child.data.tags["pareto"] == "true":  # re-evaluated on the test split, which the search never saw
            test = (OnnxModel(folder / "model.onnx").predict(splits.test_raw).argmax(1) == splits.test_y).float()
            assert child.data.metrics["test_accuracy"] == test.mean().item()
        else:
            assert "test_accuracy" not in child.data.metrics
    assert any(c.data.tags["pareto"] == "true" for c in children)
    assert [c.data.tags.get("recommended") for c in children].count("true") == 1
    assert parent.data.tags["squeezer.recommended"] == next(
        c.data.tags["squeezer.trial"] for c in children if c.data.tags.get("recommended") == "true")
    uri = parent.data.tags["squeezer.recommended_model"]
    recommended = mlflow.pyfunc.load_model(uri)  # an MLflow model of the recommended trial's run, on CPU
    logits = recommended.predict(splits.val_raw[:3].numpy())["logits"]
    assert logits.shape == (3, 10)
    # a DataFrame as MLflow takes one for a tensor input: a column of flattened rows
    table = pd.DataFrame({"pixels": [row.ravel().tolist() for row in splits.val_raw[:3].numpy()]})
    assert np.array_equal(recommended.predict(table)["logits"], logits)
    logged = mlflow.get_logged_model(uri.rsplit("/", 1)[1])
    chosen = next(c for c in children if c.data.tags.get("recommended") == "true")
    assert logged.source_run_id == chosen.info.run_id and logged.params["student.width"] == \
        chosen.data.params["student.width"] and logged.params["student.family"] == "mlp"
    assert recommended.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 1, 8, 8)
    assert recommended.metadata.metadata["squeezer.trial"] == int(chosen.data.tags["squeezer.trial"])
    assert recommended.metadata.flavors["onnx"]["providers"] == ["CPUExecutionProvider"]  # no CUDA warning
    history = sorted(client.get_metric_history(parent.info.run_id, "pareto.hypervolume"), key=lambda m: m.step)
    # 0 until a trial beats the teacher on some objective inside its box (tiny students can time slower than it)
    assert [m.step for m in history][:4] == [1, 2, 3, 4] and all(0 <= m.value < 1 for m in history)
    # the plain front's hypervolume: a new trial never takes away what was reached (the noise-aware front shown and
    # recommended may drop a member that a new one ties within noise, but the progress logged never goes back)
    assert [m.value for m in history] == sorted(m.value for m in history)
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # the teacher as a reference run beside the members, and the review view the printed link opens
    (teacher,) = runs(tmp_path, "teacher")
    assert teacher.data.tags["pareto"] == "reference" and teacher.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert teacher.data.metrics["accuracy"] == parent.data.metrics["teacher.accuracy"]
    view = json.loads(experiment.tags["mlflow.sharedViewState.squeezer-digits"])
    assert view["searchFilter"] == 'tags.pareto != "false" and tags.`squeezer.study` = "digits"'
    assert view["orderByKey"] == "metrics.`accuracy`" and "metrics.`test_accuracy`" in view["selectedColumns"]
    assert [c["xaxis"]["key"] for c in view["compareRunCharts"]] == ["size_bytes", "latency_ms"]
    link = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning" \
           "&viewStateShareKey=squeezer-digits"
    assert f"  {link}\n" in out and f"as charts: {link}&compareRunsMode=CHART" in out
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"pareto.csv", "pareto.png", "pareto.html",
                                                                         "hypervolume.png", "config.yaml"}
    described = client.get_run(parent.info.run_id).data.tags["mlflow.note.content"]  # the run's description
    assert "| trial | accuracy | ±se |" in described and "**Recommended**: " in described
    for child in children:  # every member's row links to its run
        link = f"(#/experiments/{parent.info.experiment_id}/runs/{child.info.run_id})"
        assert (link in described) == (child.data.tags["pareto"] == "true")
    page = Path(client.download_artifacts(parent.info.run_id, "pareto.html", str(tmp_path))).read_text()
    for child in children:  # each trial hovers with its run's name: a fixed family included ("t03 mlp w64 ...")
        assert child.info.run_name in page or json.dumps(child.info.run_name)[1:-1] in page, child.info.run_name
    assert parent.info.status == "FINISHED"

    # `squeezer pareto` prints the same front that the tags record, with ratios to the teacher.
    assert main(["pareto", "--study-name", "digits", "--storage", stores(tmp_path)[1]]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].split()[:9] == ["trial", "accuracy", "±se", "test", "size", "latency", "smaller", "faster",
                                      "of"]
    rows = [line.split() for line in printed[2:] if line.split()[0].rstrip("*").isdigit()]
    on_front = {int(c.data.tags["squeezer.trial"]) for c in children if c.data.tags["pareto"] == "true"}
    assert {int(row[0].rstrip("*")) for row in rows} == on_front
    assert all(row[6].endswith("x") and row[8].endswith("%") for row in rows)
    n = len(splits.val_y)  # each accuracy's standard error on the validation split
    assert all(float(row[2]) == pytest.approx((float(row[1]) * (1 - float(row[1])) / n) ** 0.5, abs=6e-4)
               for row in rows)
    named = {int(c.data.tags["squeezer.trial"]): c.info.run_name.split(" ", 1)[1] for c in children}
    for row in rows:  # the recipe as its run is named, cut with "…" where the line would pass 120 columns
        assert named[int(row[0].rstrip("*"))].startswith(" ".join(row[9:]).removesuffix("…"))
    assert all(len(line) <= 120 for line in printed)
    for fmt in ("json", "csv", "markdown"):  # every member's numbers, whole, for other tools
        assert main(["pareto", "--study-name", "digits", "--storage", stores(tmp_path)[1], "--format", fmt]) == 0
        written = capsys.readouterr().out
        if fmt == "json":
            members = json.loads(written)["members"]
            assert {m["trial"] for m in members} == on_front and sum(m["recommended"] for m in members) == 1
            assert all(m["recipe"] == named[m["trial"]] for m in members)
        elif fmt == "csv":
            assert written.splitlines()[0].startswith("trial,recommended,accuracy,") and "student.width" in written
        else:
            assert written.count("**") == 2 and written.splitlines()[-1].startswith("| teacher |")
    assert any(line.startswith("* recommended: the smallest and fastest member keeping 97%") or
               line.startswith("* recommended: none keeps 97%") for line in printed)
    assert any(line.split()[0] == "teacher" for line in printed)
    # --strict: the plain front of every run; the default one only drops members from it (noise, repeated recipes)
    assert main(["pareto", "--study-name", "digits", "--storage", stores(tmp_path)[1], "--strict",
                 "--format", "json"]) == 0
    plain = {m["trial"] for m in json.loads(capsys.readouterr().out)["members"]}
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    assert plain == {t.number for t in study.best_trials} and plain >= on_front

    # `squeezer pick` exports the most accurate member within a budget, or says none fits and which comes closest
    front_metrics = {int(c.data.tags["squeezer.trial"]): c.data.metrics for c in children
                     if c.data.tags["pareto"] == "true"}
    budget = sorted(m["size_bytes"] for m in front_metrics.values())[0]  # only the smallest member fits
    smallest = next(n for n, m in front_metrics.items() if m["size_bytes"] == budget)
    where = ["--study-name", "digits", "--storage", stores(tmp_path)[1], "--tracking-uri", stores(tmp_path)[0]]
    assert main(["pick", *where, "--max-size", f"{budget:.0f}B", "--out", str(tmp_path / "picked")]) == 0
    assert f"picked trial {smallest}: the most accurate of 1 member(s)" in capsys.readouterr().out
    assert f"# Trial {smallest} of study digits" in (tmp_path / "picked" / "README.md").read_text()
    assert main(["pick", *where, "--max-size", "1B", "--out", str(tmp_path / "none")]) == 1
    assert f"no member fits size <= 1 bytes; the closest is trial {smallest}" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    for flag, value in (("--max-size", "10XB"), ("--max-latency", "-1ms"), ("--min-accuracy", "1.5")):
        assert main(["pick", *where, flag, value, "--out", str(tmp_path / "bad")]) == 2
        one_line(capsys.readouterr().err, flag)
    assert not (tmp_path / "bad").exists()

    # `squeezer export` hands a trial over, as ONNX or torch; either reloads to the trial's accuracy.
    child = next(c for c in children if c.data.tags["pareto"] == "true")
    number = child.data.tags["squeezer.trial"]
    for fmt in ("onnx", "torch"):
        out = tmp_path / f"export-{fmt}"
        assert main(["export", "--study-name", "digits", "--trial", number, "--out", str(out), "--format", fmt,
                     "--tracking-uri", stores(tmp_path)[0]]) == 0
        readme = (out / "README.md").read_text()
        assert f"# Trial {number} of study digits" in readme and "## Reload" in readme and "x smaller" in readme
    assert accuracy(OnnxModel(tmp_path / "export-onnx" / "model.onnx"), splits) == child.data.metrics["accuracy"]
    rebuilt = deploy(export.load(tmp_path / "export-torch", realised=False), "onnxruntime", tmp_path / "re",
                     splits.val_x[:1], spec=export.spec(tmp_path / "export-torch"))  # from architecture.json
    assert accuracy(rebuilt, splits) == child.data.metrics["accuracy"]
    as_deployed = export.load(tmp_path / "export-torch")  # in torch, realised, taking the raw input
    assert accuracy(EagerModel(as_deployed, tmp_path / "none"), splits) == pytest.approx(
        child.data.metrics["accuracy"], abs=2 / len(splits.val_y))  # torch's own int8 kernels, not ONNX Runtime's
    assert main(["export", "--study-name", "digits", "--trial", "99", "--out", str(tmp_path / "x"),
                 "--tracking-uri", stores(tmp_path)[0]]) == 2
    assert "--trial: no finished trial with this number" in capsys.readouterr().err


def accuracy(deployed, splits) -> float:
    """On the validation inputs as the user has them (raw): the deployed model standardises them itself."""
    return (deployed.predict(splits.val_raw).argmax(1) == splits.val_y).float().mean().item()


def test_by_default_the_stores_are_files_in_the_working_directory(tmp_path: Path) -> None:
    assert main(["search", str(DIGITS_YAML), "--trials", "1"]) == 0  # the conftest runs each test in tmp_path
    assert {"squeezer.db", "mlflow.db", "mlartifacts"} <= {p.name for p in tmp_path.iterdir()}
    assert main(["pareto", "--study-name", "digits"]) == 0
    study = optuna.load_study(study_name="digits", storage="sqlite:///squeezer.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    assert study.metric_names == ["accuracy", "size_bytes", "latency_ms"]  # how optuna-dashboard labels its axes
    # what a finished study adds, per trial number (Optuna freezes a trial's own attributes when it ends)
    run_id = MlflowClient("sqlite:///mlflow.db").search_runs(["1"], "tags.`squeezer.role` = 'trial'")[0].info.run_id
    assert study.user_attrs["mlflow_run_ids"] == {"0": run_id} and study.user_attrs["recommended"] == 0
    assert study.trials[0].user_attrs["mlflow_run_id"] == run_id
    assert set(study.user_attrs["test_accuracy"]) == {"0"}


def test_a_journal_file_storage_works_like_a_database(tmp_path: Path) -> None:
    assert main(["search", str(DIGITS_YAML), "--trials", "2", "--storage", "journal:study.journal"]) == 0
    assert main(["search", str(DIGITS_YAML), "--trials", "3", "--storage", "journal:study.journal"]) == 0
    assert main(["pareto", "--study-name", "digits", "--storage", "journal:study.journal"]) == 0
    assert len([r for r in runs_in(tmp_path / "mlflow.db") if r.info.status == "FINISHED"]) == 3


def runs_in(database: Path) -> list:
    client = MlflowClient(f"sqlite:///{database}")
    experiment = client.get_experiment_by_name("squeezer-digits")
    return client.search_runs([experiment.experiment_id], filter_string="tags.`squeezer.role` = 'trial'")


def test_trials_over_a_size_budget_are_rejected_before_anything_trains(tmp_path: Path) -> None:
    config = digits_config()
    config["constraints"] = {"size_bytes": {"max": 12000}}
    path = write_config(tmp_path, config)
    assert search(path, tmp_path, 6) == 0
    children = runs(tmp_path, "trial")
    rejected = [c for c in children if c.info.status == "FAILED"]
    assert rejected  # the budget did bind
    for child in rejected:
        assert "rejected before training: size_bytes = " in child.data.tags["squeezer.error"]
        assert "distill.loss" not in child.data.metrics  # the size was known before any epoch
    assert all(c.data.metrics["size_bytes"] <= 12000 for c in children if c.info.status == "FINISHED")
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    assert all(set(t.constraints) == {"size_bytes <= 12000"} for t in study.trials if t.state.name == "COMPLETE")


def test_a_warm_started_study_first_tries_the_front_of_an_earlier_one(tmp_path: Path, capsys) -> None:
    assert search(DIGITS_YAML, tmp_path, 3) == 0
    earlier = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    front = [t.params for t in pareto_trials(earlier, earlier.user_attrs["objectives"])]
    config = digits_config()
    config["search"]["warm_start"] = "digits"
    assert search(write_config(tmp_path, config), tmp_path, len(front) + 1, "--study-name", "warmed") == 0
    assert f"warm start: the {len(front)} Pareto members of study 'digits' are tried first" in capsys.readouterr().out
    warmed = optuna.load_study(study_name="warmed", storage=stores(tmp_path)[1])
    assert [t.params for t in warmed.trials[:len(front)]] == front


def test_warm_starting_from_a_study_that_is_not_there_is_bad_input(tmp_path: Path, capsys) -> None:
    config = digits_config()
    config["search"]["warm_start"] = "nowhere"
    assert search(write_config(tmp_path, config), tmp_path, 1) == 2
    assert "search.warm_start: no such study in" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_other_samplers_run_the_same_study(tmp_path: Path, sampler: str) -> None:
    config = digits_config()
    config["search"] = {"sampler": sampler}  # population_size belongs to nsga2 alone
    assert search(write_config(tmp_path, config), tmp_path, 3) == 0
    assert len(runs(tmp_path, "trial")) == 3


def test_a_stopped_study_resumes_without_losing_finished_trials(tmp_path: Path, capsys) -> None:
    assert search(DIGITS_YAML, tmp_path, 2) == 0
    first = {r.info.run_id: r.data.metrics["accuracy"] for r in runs(tmp_path, "trial")}
    assert search(DIGITS_YAML, tmp_path, 3) == 0
    assert "2/3 trials done" in capsys.readouterr().out
    after = {r.info.run_id: r.data.metrics["accuracy"] for r in runs(tmp_path, "trial")}
    assert len(after) == 3 and all(after[k] == v for k, v in first.items())
    assert len(runs(tmp_path, "study")) == 1
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    assert len(study.trials) == 3


def test_a_resumed_study_draws_new_points_rather_than_replaying_the_first_ones(tmp_path: Path, capsys) -> None:
    config = digits_config()
    config["search"] = {"sampler": "random", "trials": 2}
    path = write_config(tmp_path, config)
    assert search(path, tmp_path, 2) == 0
    assert search(path, tmp_path, 4) == 0
    trials = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1]).trials
    assert trials[2].params != trials[0].params and trials[3].params != trials[1].params


def test_interrupted_trials_are_closed_as_failed_on_resume(tmp_path: Path, capsys) -> None:
    assert search(DIGITS_YAML, tmp_path, 1) == 0
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    study.ask()  # a trial the killed process never told
    assert search(DIGITS_YAML, tmp_path, 2) == 0
    states = [t.state for t in optuna.load_study(study_name="digits", storage=stores(tmp_path)[1]).trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1 and "interrupted" in capsys.readouterr().out


def test_resuming_with_a_changed_config_is_refused(tmp_path: Path, capsys) -> None:
    assert search(DIGITS_YAML, tmp_path, 1) == 0
    config = digits_config()
    config["student"]["depth"] = 3
    changed = write_config(tmp_path, config)
    assert search(changed, tmp_path, 2) == 2
    assert "was run with a different config" in capsys.readouterr().err


@dataclass(frozen=True)
class BreakConfig(CompressorConfig):
    how: str = "raise"


class Break(Compressor):
    """Breaks every trial with an even seed, by raising or by poisoning the weights with NaN."""

    name = "test-break"
    Config = BreakConfig

    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        if ctx.seed % 2:
            return model
        if self.config.how == "raise":
            raise RuntimeError("boom")
        if self.config.how == "memory":
            raise MemoryError("cannot allocate the student")
        broken = copy.deepcopy(model)
        with torch.no_grad():
            next(broken.parameters()).fill_(float("nan"))
        return broken


@pytest.mark.parametrize("how, reason", [("raise", "RuntimeError: boom"), ("nan", "outputs NaN or inf"),
                                         ("memory", "MemoryError: cannot allocate")])
def test_a_failing_trial_is_recorded_with_its_reason_and_the_study_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, how: str, reason: str) -> None:
    monkeypatch.setattr(compressors.registry, "_REGISTRY", {**compressors.registry._REGISTRY, "test-break": Break})
    config = digits_config()
    config["pipeline"] = [{"distill": {"epochs": 2}}, {"test-break": {"how": how}}, {"quantize": {"bits": 32}}]
    path = write_config(tmp_path, config)
    assert search(path, tmp_path, 4) == 0
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    states = [t.state.name for t in study.trials]
    assert states.count("FAIL") == 2 and states.count("COMPLETE") == 2
    failed = [r for r in runs(tmp_path, "trial") if r.info.status == "FAILED"]
    assert len(failed) == 2 and all(reason in r.data.tags["squeezer.error"] for r in failed)
    out = capsys.readouterr().out
    assert reason in out and "2 completed trials; 2 failed" in out
    (parent,) = runs(tmp_path, "study")
    assert parent.data.metrics["trials.failed"] == 2


class Interrupt(Compressor):
    """Plays the user pressing Ctrl-C (or a scheduler sending SIGTERM) during the second trial, while `armed` is
    set."""

    name = "test-interrupt"
    Config = BreakConfig
    armed = True

    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        if Interrupt.armed and ctx.seed == 1:
            if self.config.how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            raise KeyboardInterrupt
        return model


@pytest.mark.parametrize("how, code, said", [("raise", 130, "interrupted"), ("sigterm", 143, "stopped by SIGTERM")])
def test_ctrl_c_or_sigterm_stops_cleanly_and_the_study_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys, how: str, code: int, said: str) -> None:
    monkeypatch.setattr(compressors.registry, "_REGISTRY",
                        {**compressors.registry._REGISTRY, "test-interrupt": Interrupt})
    config = digits_config()
    config["pipeline"] = [{"distill": {"epochs": 2}}, {"test-interrupt": {"how": how}}, "quantize"]
    path = write_config(tmp_path, config)

    assert search(path, tmp_path, 3) == code
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("squeezer")]
    assert err == [f"squeezer: {said}; finished trials are kept — run the same command to resume"]
    assert sorted(r.info.status for r in runs(tmp_path, "trial")) == ["FINISHED", "KILLED"]
    assert runs(tmp_path, "study")[0].info.status == "KILLED"

    monkeypatch.setattr(Interrupt, "armed", False)
    assert search(path, tmp_path, 3) == 0
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[1].user_attrs["fail_reason"].startswith("interrupted")
    assert runs(tmp_path, "study")[0].info.status == "FINISHED"
    assert "3 completed trials; 0 failed, 1 interrupted (run again)" in capsys.readouterr().out


class Misfit(Compressor):
    """A setting that only a trial can find wrong: every trial fails for the same configuration reason."""

    name = "test-misfit"
    Config = BreakConfig

    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        raise InvalidConfig("how", "does not fit this data", self.config.how)


def test_a_study_whose_first_trials_all_fail_for_one_config_reason_stops_as_bad_input(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(compressors.registry, "_REGISTRY", {**compressors.registry._REGISTRY, "test-misfit": Misfit})
    config = digits_config()
    config["pipeline"] = [{"distill": {"epochs": 1}}, "test-misfit"]
    assert search(write_config(tmp_path, config), tmp_path, 10) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("squeezer")]
    assert len(err) == 1 and err[0].startswith("squeezer: error: test-misfit.how: does not fit this data"), err
    study = optuna.load_study(study_name="digits", storage=stores(tmp_path)[1])
    assert [t.state.name for t in study.trials] == ["FAIL"] * 3
    assert runs(tmp_path, "study")[0].info.status == "FAILED"


def test_a_study_stopped_before_its_end_shows_its_front_in_the_review(tmp_path: Path, monkeypatch) -> None:
    """Trials take minutes and users stop studies to look: the runs carry the front's tags as each trial ends, not
    only when the study records its summary (here it never does: stopped as Ctrl-C would)."""
    from squeezer.search.study import session

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(session.summary, "record", interrupted)
    config = tmp_path / "digits.yaml"
    config.write_text(yaml.safe_dump({"name": "stopped", "data": {"name": "digits"},
                                      "teacher": {"family": "mlp", "arch": {"depth": 1, "width": 32}, "epochs": 2},
                                      "student": {"family": "mlp", "depth": 1, "width": {"choice": [8, 16, 32]}},
                                      "pipeline": [{"distill": {"epochs": 1}}], "search": {"trials": 3}}))
    main(["search", str(config), "--storage", f"sqlite:///{tmp_path}/s.db",
          "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    study = optuna.load_study(study_name="stopped", storage=f"sqlite:///{tmp_path}/s.db")
    front = {t.number for t in pareto_trials(study, {"accuracy": "maximize", "size_bytes": "minimize",
                                                     "latency_ms": "minimize"})}
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`squeezer.role` = 'trial'")
    tags = {int(r.data.tags["squeezer.trial"]): r.data.tags.get("pareto") for r in runs}
    assert front and tags == {n: "true" if n in front else "false" for n in tags}
