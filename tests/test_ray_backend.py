"""The Ray Tune backend runs the same study as the Optuna backend and lands in MLflow the same way."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

from squeezer.search.backends.cluster import at_once
from squeezer.search.cli import main
from squeezer.search.config.experiment import SearchSettings
from squeezer.search.study.squeezer_sampler import WARMUP

from conftest import DIGITS_YAML, digits_config, one_line, write_config
from test_language_models import experiment as tiny_lm
from test_user_models import experiment
from test_study import runs, stores

RAY = Path(sys.executable).parent / "ray"


def start_local_ray() -> None:
    """A new local Ray (never one left running), with one GPU declared on this CPU machine."""
    import ray

    ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=1, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="WARNING")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for this file's studies (each would otherwise start and stop its own), with one GPU declared on
    this CPU machine so that Tune's GPU packing runs too. The backend joins a running Ray and leaves it running."""
    import ray

    start_local_ray()
    yield
    ray.shutdown()


def test_the_ray_backend_records_trials_like_the_optuna_backend(tmp_path: Path) -> None:
    tracking, storage = stores(tmp_path)
    assert main(["search", str(DIGITS_YAML), "--backend", "ray", "--trials", "3", "--tracking-uri", tracking,
                 "--storage", storage]) == 0
    (parent,), children = runs(tmp_path, "study"), runs(tmp_path, "trial")
    assert len(children) == 3 and parent.info.status == "FINISHED"
    client = MlflowClient(tracking)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {"accuracy", "size_bytes", "latency_ms"} <= set(child.data.metrics)
        assert {"student.width", "distill.temperature", "prune.ratio", "quantize.bits"} <= set(child.data.params)
        assert child.data.tags["pareto"] in ("true", "false") and child.data.tags["squeezer.node"]
        assert len(client.get_metric_history(child.info.run_id, "distill.loss")) == 15
        model = Path(client.download_artifacts(child.info.run_id, "model.onnx", str(tmp_path / child.info.run_id)))
        assert model.stat().st_size == child.data.metrics["size_bytes"]
    study = optuna.load_study(study_name="digits", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert {"pareto.csv", "pareto.png", "config.yaml"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_the_users_own_teacher_from_a_file_on_an_image_folder_runs_on_ray_baselines_first(tmp_path: Path) -> None:
    """The teacher's class comes from the user's Python file, which Ray's workers cannot import by name: it travels
    by value; the memory-mapped image splits travel as their files' paths."""
    config = experiment(tmp_path)
    config["student"] = {"family": {"choice": {"teacher": {}, "cnn": {"channels": {"int": [2, 4]}, "hidden": 8}}}}
    config["search"] = {"sampler": "random", "backend": "ray"}
    tracking, storage = stores(tmp_path)
    assert main(["search", str(write_config(tmp_path, config)), "--trials", "3", "--tracking-uri", tracking,
                 "--storage", storage]) == 0
    trials = {int(r.data.tags["squeezer.trial"]): r for r in runs(tmp_path, "trial", "mine")}
    assert [trials[n].data.params.get("baseline.recipe") for n in range(3)] == ["fp16", "int8", None]
    assert all(r.info.status == "FINISHED" for r in trials.values())
    assert "distill.epochs" not in trials[0].data.params  # nothing trained: no distillation setting applies
    study = optuna.load_study(study_name="mine", storage=storage)
    assert [t.params for t in study.trials[:2]] == [{"baseline": "fp16"}, {"baseline": "int8"}]


def test_a_ray_study_resumes_to_a_raised_target(tmp_path: Path) -> None:
    tracking, storage = stores(tmp_path)
    for trials in ("2", "3"):
        assert main(["search", str(DIGITS_YAML), "--backend", "ray", "--trials", trials, "--tracking-uri", tracking,
                     "--storage", storage]) == 0
    study = optuna.load_study(study_name="digits", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert sorted(int(r.data.tags["squeezer.trial"]) for r in runs(tmp_path, "trial")) == [0, 1, 2]
    assert len(runs(tmp_path, "study")) == 1


def test_a_failing_trial_on_ray_is_failed_with_its_reason(tmp_path: Path) -> None:
    config = digits_config()
    # An absurd learning rate makes distillation diverge inside the trial; the sane one trains.
    config["pipeline"] = [{"distill": {"epochs": 1, "lr": {"choice": [0.003, 1e30]}}}, "quantize"]
    config["search"] = {"sampler": "random"}
    tracking, storage = stores(tmp_path)
    assert main(["search", str(write_config(tmp_path, config)), "--backend", "ray", "--trials", "4",
                 "--tracking-uri", tracking, "--storage", storage]) == 0
    failed = [r for r in runs(tmp_path, "trial") if r.info.status == "FAILED"]
    study = optuna.load_study(study_name="digits", storage=storage)
    fails = [t for t in study.trials if t.state.name == "FAIL"]
    assert 0 < len(failed) == len(fails) < 4
    assert {r.data.params["distill.lr"] for r in failed} == {"1e+30"}
    assert all(t.user_attrs["fail_reason"].startswith("DivergedError: distill: training loss became nan")
               for t in fails)
    assert all(r.data.tags["squeezer.error"].startswith("DivergedError") for r in failed)


@pytest.fixture
def two_node_cluster(tmp_path: Path):
    """A real Ray cluster on loopback: a head and a second node, one CPU each, with its own auth token. ``ray stop``
    stops every Ray of the machine: this process's own local Ray is shut down first and started again after (else its
    core worker, finding its raylet gone, ends the test process with exit status 1 and no word)."""
    import ray

    ray.shutdown()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = str(6400 + secrets.randbelow(1000))
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", "--port", port, "--include-dashboard", "false", *common], env=env,
                       check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        start_local_ray()


@pytest.mark.slow
def test_a_study_runs_across_a_two_node_ray_cluster(tmp_path: Path, two_node_cluster) -> None:
    address, env = two_node_cluster
    tracking, storage = stores(tmp_path)
    config = digits_config()
    # random draws are instant: Tune starts two trials at once, one per node (screening on the driver can take
    # longer than a digits trial, and a reused actor then runs every trial on one node)
    config["search"] = {"sampler": "random", "scheduler": "none"}
    done = subprocess.run([sys.executable, "-m", "squeezer.search.cli", "search", str(write_config(tmp_path, config)),
                           "--backend", "ray", "--address", address, "--trials", "4", "--tracking-uri", tracking,
                           "--storage", storage], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    children = runs(tmp_path, "trial")
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.tags["squeezer.node"] for c in children}) == 2  # both nodes ran trials


def test_tune_packs_trials_onto_the_gpus_a_cpu_node_declares(tmp_path: Path) -> None:
    """A node declaring one GPU runs trials of half a GPU two at a time, each given GPU 0 (here they train on the
    CPU: torch sees no CUDA; on a GPU node they would train on it)."""
    import ray

    assert at_once({"CPU": 2, "GPU": 1}, SearchSettings(backend="ray", gpus_per_trial=0.5)) == 2
    assert at_once({"CPU": 2, "GPU": 1}, SearchSettings(backend="ray", gpus_per_trial=1)) == 1
    assert at_once({"CPU": 8, "GPU": 1}, SearchSettings(backend="ray", gpus_per_trial=0.125)) == 8
    config = digits_config()
    config["pipeline"] = [{"distill": {"epochs": 2}}]
    config["search"] = {"sampler": "random", "backend": "ray", "gpus_per_trial": 0.5}
    tracking, storage = stores(tmp_path)
    assert ray.cluster_resources()["GPU"] == 1  # declared (``local_ray``)
    assert main(["search", str(write_config(tmp_path, config)), "--trials", "2", "--tracking-uri", tracking,
                 "--storage", storage]) == 0
    children = runs(tmp_path, "trial")
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert [c.data.tags["squeezer.gpus"] for c in children] == ["0", "0"]
    # where they train: the CPU of a machine without a GPU (the GPU is only declared), else the GPU Tune gave them
    assert {c.data.tags["squeezer.device"].split(":")[0] for c in children} == \
        {"cuda" if torch.cuda.is_available() else "cpu"}


@pytest.mark.parametrize("scheduler", ["asha", "halving"])
def test_tunes_asha_stops_weak_trials_early_on_ray(tmp_path: Path, scheduler: str) -> None:
    """On accuracy alone (``asha``), or fed each trial's standing on the front at its epoch (``halving``)."""
    config = digits_config()
    config["pipeline"][0]["distill"]["lr"] = {"float": [1e-4, 1e-2], "log": True}  # some learn far slower
    config["search"] = {"sampler": "random", "backend": "ray", "scheduler": scheduler}
    tracking, storage = stores(tmp_path)
    assert main(["search", str(write_config(tmp_path, config)), "--trials", "8", "--tracking-uri", tracking,
                 "--storage", storage]) == 0
    study = optuna.load_study(study_name="digits", storage=storage)
    states = [t.state.name for t in study.trials]
    assert "PRUNED" in states and "COMPLETE" in states and len(states) == 8
    stopped = [r for r in runs(tmp_path, "trial") if r.info.status == "KILLED"]
    assert len(stopped) == states.count("PRUNED")
    assert all(r.data.tags["squeezer.error"].startswith("stopped early by the scheduler") for r in stopped)
    assert runs(tmp_path, "study")[0].data.metrics["trials.stopped_early"] == states.count("PRUNED")
    client = MlflowClient(tracking)
    for run in (r for r in runs(tmp_path, "trial") if r.info.status == "FINISHED"):  # each trained the whole budget
        history = client.get_metric_history(run.info.run_id, "distill.val_accuracy")
        assert len(history) == config["pipeline"][0]["distill"]["epochs"]


def test_squeezer_sampler_screens_the_recipes_tune_runs(tmp_path: Path) -> None:
    config = digits_config()
    config["search"] = {"sampler": "squeezer", "candidates": 4, "backend": "ray"}
    tracking, storage = stores(tmp_path)
    assert main(["search", str(write_config(tmp_path, config)), "--trials", "8", "--tracking-uri", tracking,
                 "--storage", storage]) == 0
    trials = optuna.load_study(study_name="digits", storage=storage).trials
    assert len(trials) == 8 and all(t.state.name == "COMPLETE" for t in trials)
    screened = [t for t in trials if t.user_attrs.get("screened")]
    assert screened and all(t.number >= WARMUP for t in screened)  # queued by the driver, run by Tune
    assert len(runs(tmp_path, "trial")) == 8


@pytest.mark.parametrize("flags, key", [
    (["--cpus-per-trial", "64"], "search.cpus_per_trial: must fit on one node of the Ray cluster"),
    (["--gpus-per-trial", "2"], "search.gpus_per_trial: must fit on one node of the Ray cluster; its largest has "
                                "1 GPUs"),
    (["--address", "head-without-port"], "search.address: must be HOST:PORT"),
    (["--address", "127.0.0.1:1"], "search.address: no Ray head answers there"),
])
def test_a_cluster_that_cannot_run_the_trials_is_refused_before_anything_is_created(
        tmp_path: Path, capsys, flags: list[str], key: str) -> None:
    tracking, storage = stores(tmp_path)
    assert main(["search", str(DIGITS_YAML), "--backend", "ray", "--trials", "1", "--tracking-uri", tracking,
                 "--storage", storage, *flags]) == 2
    one_line(capsys.readouterr().err, key)
    assert list(tmp_path.iterdir()) == []


def test_ray_runs_a_finite_space_once_and_repeats_a_sampled_recipe(tmp_path: Path) -> None:
    tracking, storage = stores(tmp_path)
    config = digits_config()
    config["student"] = {"family": "mlp", "depth": 1, "width": {"choice": [16, 32]}}
    config["pipeline"] = [{"distill": {"epochs": 1}}, {"quantize": {"bits": {"choice": [32, 8]}}}]
    config["search"] = {"sampler": "random", "backend": "ray", "trials": 10, "scheduler": "none"}
    assert main(["search", str(write_config(tmp_path, config)), "--tracking-uri", tracking, "--storage",
                 storage]) == 0
    study = optuna.load_study(study_name="digits", storage=storage)
    assert sorted((t.params["student.width"], t.params["quantize.bits"]) for t in study.trials) == [
        (16, 8), (16, 32), (32, 8), (32, 32)]  # the four recipes once each, not ten trials

    config["name"] = "repeated"
    config["pipeline"] = [{"distill": {"epochs": 1, "temperature": {"float": [1.0, 4.0]}}}]
    config["search"] = {**config["search"], "trials": 4, "repeats": 2}
    assert main(["search", str(write_config(tmp_path, config)), "--tracking-uri", tracking, "--storage",
                 storage]) == 0
    temperatures = [t.params["distill.temperature"] for t in optuna.load_study(study_name="repeated",
                                                                               storage=storage).trials]
    assert len(temperatures) == 4 and len(set(temperatures)) == 2  # two recipes, each run twice


@pytest.mark.slow  # a Ray of its own in a fresh process
def test_sigterm_stops_a_ray_study_with_the_one_resume_line(tmp_path: Path) -> None:
    """Ray's core worker dumps a stack on SIGTERM (its failure handler); the study's own handler says what to do."""
    import signal
    import time

    config = digits_config()
    config["search"] = {"sampler": "random", "scheduler": "none"}
    tracking, storage = stores(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "squeezer.search.cli", "search",
                                str(write_config(tmp_path, config)), "--backend", "ray", "--trials", "40",
                                "--tracking-uri", tracking, "--storage", storage], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "RAY_ADDRESS": ""})
    deadline = time.monotonic() + 300
    for line in process.stdout:  # the first finished trial: the study is running on Ray
        if line.startswith("[trial") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    assert "SIGTERM received" not in err and "stopped by SIGTERM; finished trials are kept" in err, err[-2000:]


# language models on Ray

def lm_experiment(folder: Path, made: Path, lr: object = None, **sections: object) -> Path:
    """The tiny language model's experiment file (``test_language_models``), with ``lm_distill.lr`` if given."""
    import yaml

    path = tiny_lm(folder, made, **sections)
    if lr is not None:
        config = yaml.safe_load(path.read_text())
        config["pipeline"][1]["lm_distill"]["lr"] = lr
        path.write_text(yaml.safe_dump(config))
    return path


def test_a_language_model_study_runs_on_ray_like_on_optuna(made, tmp_path: Path) -> None:
    """Baselines first, every student deployed in ONNX Runtime GenAI on a worker, its curve and folder in MLflow; the
    teacher's cached top-k outputs reach the workers as their file's path; a raised target resumes the study."""
    tracking, storage = stores(tmp_path)
    path = lm_experiment(tmp_path, made, search={"backend": "ray", "sampler": "random"})
    assert main(["search", str(path), "--trials", "4", "--tracking-uri", tracking, "--storage", storage]) == 0
    study = optuna.load_study(study_name="tiny-lm", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert [t.params.get("baseline") for t in study.trials[:2]] == ["int4", "int8"]
    client = MlflowClient(tracking)
    children = runs(tmp_path, "trial", "tiny-lm")
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    for child in children:
        assert {"perplexity", "size_bytes", "latency_ms", "ttft_ms"} <= set(child.data.metrics)
        assert child.data.tags["squeezer.node"] and child.data.tags["squeezer.device"] == "cpu"
    trained = [c for c in children if "lm_distill.loss" in c.data.params]
    assert trained and all(len(client.get_metric_history(c.info.run_id, "lm_distill.val_perplexity")) == 2
                           for c in trained)
    one = children[0]
    folder = Path(client.download_artifacts(one.info.run_id, "onnxruntime-genai", str(tmp_path / "got")))
    onnx = sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("model.onnx"))
    assert onnx == one.data.metrics["size_bytes"]
    # resumed to a raised target: the finished trials kept, one more run
    assert main(["search", str(path), "--trials", "5", "--tracking-uri", tracking, "--storage", storage]) == 0
    study = optuna.load_study(study_name="tiny-lm", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5 and len(runs(tmp_path, "trial", "tiny-lm")) == 5


def test_a_language_model_bench_travels_to_this_machines_workers_as_the_paths_of_its_files(made, tmp_path) -> None:
    import pickle

    from squeezer.search.config.experiment import load_config
    from squeezer.search.trial.lm.workbench import prepare

    bench = prepare(load_config(lm_experiment(tmp_path, made)))
    mapped = bench.top_k.values.nbytes + bench.top_k.indices.nbytes + bench.splits.train.nbytes
    by_value, by_path = pickle.dumps(bench), pickle.dumps(bench.sent_by_path())
    assert len(by_value) - len(by_path) > mapped  # neither the teacher's outputs nor the text travel
    again = pickle.loads(by_path)
    assert torch.equal(again.top_k.values, bench.top_k.values) and torch.equal(again.top_k.rest, bench.top_k.rest)
    assert torch.equal(again.splits.train, bench.splits.train) and again.splits.folder == bench.splits.folder


@pytest.mark.parametrize("sampler, scheduler", [("squeezer", "none"), ("random", "halving")])
def test_squeezer_sampler_and_halving_run_language_model_studies_on_ray(made, tmp_path, sampler, scheduler) -> None:
    tracking, storage = stores(tmp_path)
    search = {"backend": "ray", "sampler": sampler, "scheduler": scheduler}
    if sampler == "squeezer":
        search["candidates"] = 3
    path = lm_experiment(tmp_path, made, search=search, lr={"float": [1e-5, 1e-2], "log": True})
    trials = 2 + WARMUP + 2 if sampler == "squeezer" else 10  # the two baselines first
    assert main(["search", str(path), "--trials", str(trials), "--tracking-uri", tracking, "--storage", storage]) == 0
    study = optuna.load_study(study_name="tiny-lm", storage=storage)
    states = [t.state.name for t in study.trials]
    if sampler == "squeezer":
        assert states == ["COMPLETE"] * trials
        assert [t.number for t in study.trials if t.user_attrs.get("screened")]
    else:
        assert "PRUNED" in states and "COMPLETE" in states


@pytest.mark.slow
def test_a_language_model_study_runs_across_a_two_node_ray_cluster(made, tmp_path: Path, two_node_cluster) -> None:
    """Across machines the teacher's outputs and the text travel by value (Ray's object store), not by path."""
    address, env = two_node_cluster
    tracking, storage = stores(tmp_path)
    path = lm_experiment(tmp_path, made, search={"sampler": "random", "scheduler": "none"})
    done = subprocess.run([sys.executable, "-m", "squeezer.search.cli", "search", str(path), "--backend", "ray",
                           "--address", address, "--trials", "6", "--tracking-uri", tracking, "--storage", storage],
                          env={**env, "SQUEEZER_CACHE": str(tmp_path / "cache")}, cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    children = runs(tmp_path, "trial", "tiny-lm")
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.tags["squeezer.node"] for c in children}) == 2  # both nodes ran trials
