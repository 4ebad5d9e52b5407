"""Hundreds of malformed configs and data files: each gets exit 2, one line naming the setting or file, no traceback,
and nothing written (no study, no run, no cached teacher)."""

from __future__ import annotations

import copy
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import yaml

from squeezer.search.cli import main

from conftest import digits_config, one_line

NAN, INF = float("nan"), float("inf")


@dataclass
class Case:
    name: str
    key: str                                   # the setting or file the message must name
    config: Any = None                         # a mapping (or raw text) written as experiment.yaml
    files: Callable[[Path], None] | None = None  # writes data files beside it
    args: tuple[str, ...] = ()                 # command-line flags after `squeezer search experiment.yaml`

    def write(self, where: Path) -> Path:
        if self.files:
            self.files(where)
        path = where / "experiment.yaml"
        if isinstance(self.config, bytes):
            path.write_bytes(self.config)
        else:
            path.write_text(self.config if isinstance(self.config, str) else yaml.safe_dump(self.config))
        return path


def changed(path: str, value: Any, base: dict | None = None) -> dict:
    """The digits experiment with the setting at dotted ``path`` set to ``value`` (a `pipeline.<step>` path
    reaches into that step; DELETE removes the setting)."""
    config = copy.deepcopy(base or digits_config())
    *parents, last = path.split(".")
    node = config
    for part in parents:
        if isinstance(node, list):  # pipeline: find the step by name
            node = next(step[part] for step in node if isinstance(step, dict) and part in step)
        else:
            node = node.setdefault(part, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return config


DELETE = object()
SECTIONS = {section: (7, "text", [1, 2], True) for section in ("data", "teacher", "student", "pipeline", "objectives",
                                                               "constraints", "search", "measure", "training")}
SECTIONS |= {"name": (7, "two words", [1, 2], True), "seed": ("text", [1, 2], True, -3)}
INTEGERS = ["search.trials", "search.population_size", "search.max_concurrent", "measure.threads", "measure.warmup",
            "measure.repeats", "measure.batch", "training.batch_size", "training.threads", "search.jobs", "seed",
            "teacher.epochs", "data.train_size"]
FLOATS = ["search.timeout_s", "search.cpus_per_trial", "search.gpus_per_trial", "search.min_accuracy_share",
          "teacher.lr", "data.val_fraction",
          "data.test_fraction"]
ENUMS = ["search.sampler", "search.backend", "search.scheduler", "data.name", "teacher.family", "student.family"]
BAD_SPECS = [{"int": [3, 1]}, {"int": ["a", 5]}, {"int": [1, 5], "step": 0}, {"int": [0, 5], "log": True},
             {"float": [NAN, 1]}, {"float": [0, INF]}, {"float": [1]}, {"choice": []}, {"choice": [1, 1]},
             {"int": [1, 5], "bogus": 1}, {"choice": [[1], [2]]}]
BAD_STEP_SETTINGS = [
    ("distill", "temperature", -1), ("distill", "temperature", 0), ("distill", "temperature", "hot"),
    ("distill", "temperature", NAN), ("distill", "soft_weight", -0.1), ("distill", "hard_weight", NAN),
    ("distill", "feature_weight", -1), ("distill", "attention_weight", "x"), ("distill", "alpha", 0.5),
    ("distill", "method", "bogus"), ("distill", "temperature_schedule", "bogus"), ("distill", "weighting", "bogus"),
    ("distill", "ensemble", "bogus"), ("distill", "feature_loss", "l1"), ("distill", "lr_schedule", "step"),
    ("distill", "temperature_end", 0), ("distill", "dwa_temperature", -1), ("distill", "label_fraction", 0),
    ("distill", "label_fraction", 1.5), ("distill", "pseudo_threshold", 2), ("distill", "ema_decay", 1.0),
    ("distill", "probe_size", 0), ("distill", "controller_gain", -1), ("distill", "warmup_epochs", 15),
    ("distill", "accumulate", 0), ("distill", "feature_layers", "bogus"), ("distill", "feature_layers", ["1-2"]),
    ("distill", "attention_layers", []),
    ("distill", "epochs", 0), ("distill", "epochs", 2.5), ("distill", "lr", 0), ("distill", "lr", INF),
    ("distill", "weight_decay", -1), ("prune", "ratio", 1.0), ("prune", "ratio", -0.1), ("prune", "ratio", INF),
    ("prune", "structured", "yes"), ("prune", "finetune_epochs", -1), ("quantize", "bits", 7),
    ("quantize", "bits", "8"), ("quantize", "half", "fp8"), ("quantize", "int8_mode", "magic"),
    ("quantize", "calibration_samples", 0)]


def cases() -> list[Case]:
    found = [Case(f"section {s} = {v!r}", s, changed(s, v)) for s, values in SECTIONS.items() for v in values]
    # (a missing student is no mistake: the default students are searched)
    found += [Case(f"missing {s}", s, changed(s, DELETE)) for s in ("name", "data", "teacher")]
    for key in INTEGERS:
        for value in (-1, 1.5, "3", True, NAN, INF, 10**30, [], *(() if key in ("seed", "measure.warmup") else (0,))):
            found.append(Case(f"{key} = {value!r}", key, changed(key, value)))
    found += [Case(f"{key} = {value!r}", key, changed(key, value)) for key in FLOATS
              for value in (0, -1, NAN, INF, "x", True)]
    found += [Case(f"{key} = {value!r}", key.split(".")[0], changed(key, value)) for key in ENUMS
              for value in ("bogus", 3)]
    for knob in ("student.width", "pipeline.distill.temperature", "pipeline.prune.ratio"):
        found += [Case(f"{knob} = {spec}", knob.removeprefix("pipeline."), changed(knob, spec)) for spec in BAD_SPECS]
    found += [Case(f"{step}.{key} = {value!r}", step, changed(f"pipeline.{step}.{key}", value))
              for step, key, value in BAD_STEP_SETTINGS]
    return (found + unknown_names() + inconsistent() + absurd_sizes() + yaml_files() + data_files() + distillation()
            + model_files() + stores() + flags() + settings_against_data() + messages() + devices())


def state_dict_file(save: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda where: save(where / "teacher.pt")


def teacher_at(path: str = "teacher.pt", base: dict | None = None, member: bool = False) -> dict:
    if member:
        return changed("teacher.ensemble", [{"path": path}], base)
    return changed("teacher.path", path, base)


def _digits_teacher() -> torch.nn.Module:
    from squeezer.search import models

    arch = digits_config()["teacher"]["arch"]
    return models.build({"family": "mlp", **arch}, (1, 8, 8), 10)


def model_files() -> list[Case]:
    """Teacher checkpoints as users save them: the whole module (pickled), empty, truncated, foreign, mismatched."""
    def whole(path: Path) -> None:
        torch.save(_digits_teacher(), path)

    def truncated(path: Path) -> None:
        torch.save(_digits_teacher().state_dict(), path)
        _truncate(path, path.stat().st_size // 2)

    def renamed(path: Path) -> None:
        torch.save({f"net.{k}": v for k, v in _digits_teacher().state_dict().items()}, path)

    def reshaped(path: Path) -> None:
        state = _digits_teacher().state_dict()
        torch.save({k: v[:3] if k == "1.weight" else v for k, v in state.items()}, path)

    savers = {"a whole pickled module": whole, "an empty file": lambda p: p.write_bytes(b""),
              "a truncated checkpoint": truncated, "a text file": lambda p: p.write_text("weights, surely\n"),
              "a JSON file": lambda p: p.write_text('{"1.weight": [1, 2]}'),
              "a tensor, not a state dict": lambda p: torch.save(torch.zeros(3), p),
              "a dict of lists": lambda p: torch.save({"1.weight": [1.0]}, p),
              "other key names": renamed, "another shape": reshaped,
              "an npz": lambda p: np.savez(p.with_suffix(".npz"), X=np.zeros(2)) or p.with_suffix(".npz").rename(p)}
    cases = [Case(f"teacher file: {name}", "teacher.path", teacher_at(), state_dict_file(save))
             for name, save in savers.items()]
    cases += [Case(f"ensemble teacher file: {name}", "teacher.ensemble[0].path", teacher_at(member=True),
                   state_dict_file(save)) for name, save in list(savers.items())[:4]]
    return cases


def _sqlite_file(path: Path) -> None:
    import sqlite3

    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (a)")


def stores() -> list[Case]:
    """Tracking stores and study storages that cannot work, found before anything is written."""
    digits = digits_config()
    text = raw_file("notes.txt", b"not a database")
    return [
        Case("tracking: unknown scheme", "--tracking-uri", digits, args=("--tracking-uri", "bogus://x")),
        Case("tracking: silent server", "--tracking-uri", digits, args=("--tracking-uri", "http://127.0.0.1:1")),
        Case("tracking: a text file", "--tracking-uri", digits, text, args=("--tracking-uri", "sqlite:///notes.txt")),
        Case("tracking: a folder as SQLite", "--tracking-uri", digits, lambda w: (w / "db").mkdir(),
             args=("--tracking-uri", "sqlite:///db")),
        Case("tracking: under a file", "--tracking-uri", digits, text,
             args=("--tracking-uri", "sqlite:///notes.txt/mlflow.db")),
        Case("tracking: a file as a file store", "--tracking-uri", digits, text, args=("--tracking-uri", "notes.txt")),
        Case("tracking: SQLite with two slashes", "--tracking-uri", digits, args=("--tracking-uri", "sqlite://x.db")),
        Case("tracking: silent database", "--tracking-uri", digits,
             args=("--tracking-uri", "postgresql://u@127.0.0.1:1/db")),
        Case("storage: unknown scheme", "--storage", digits, args=("--storage", "redis://127.0.0.1/0")),
        Case("storage: a text file", "--storage", digits, text, args=("--storage", "sqlite:///notes.txt")),
        Case("storage: journal is a folder", "--storage", digits, lambda w: (w / "j").mkdir(),
             args=("--storage", "journal:j")),
        Case("storage: journal without a path", "--storage", digits, args=("--storage", "journal:")),
        Case("storage: silent database", "--storage", digits, args=("--storage", "mysql://u@127.0.0.1:1/db")),
        Case("storage: a URL without a host", "--storage", digits, args=("--storage", "postgresql:///db")),
        Case("storage: empty", "--storage", digits, args=("--storage", "")),
    ]


def flags() -> list[Case]:
    digits = digits_config()
    return [
        Case("--seed below zero", "--seed", digits, args=("--seed", "-1")),
        Case("--seed past the generators' range", "--seed", digits, args=("--seed", str(2**40))),
        Case("--trials 0", "--trials", digits, args=("--trials", "0")),
        Case("--trials absurd", "--trials", digits, args=("--trials", str(10**9))),
        Case("--trials not a number", "--trials", digits, args=("--trials", "many")),
        Case("--seed not a number", "--seed", digits, args=("--seed", "1.5")),
        Case("--backend unknown", "--backend", digits, args=("--backend", "dask")),
        Case("unknown flag", "--trails", digits, args=("--trails", "3")),
        Case("a flag without its value", "--study-name", digits, args=("--study-name",)),
        Case("--address with optuna", "--address", digits, args=("--address", "10.0.0.1:6379")),
        Case("--max-concurrent with optuna", "--max-concurrent", digits, args=("--max-concurrent", "2")),
        Case("--cpus-per-trial with optuna", "--cpus-per-trial", digits, args=("--cpus-per-trial", "2")),
        Case("--cpus-per-trial not finite", "search.cpus_per_trial", digits,
             args=("--backend", "ray", "--cpus-per-trial", "nan")),
        Case("--max-concurrent negative", "search.max_concurrent", digits,
             args=("--backend", "ray", "--max-concurrent", "-2")),
        Case("search.address with optuna", "search.address", changed("search.address", "10.0.0.1:6379")),
        Case("search.cpus_per_trial with optuna", "search.cpus_per_trial", changed("search.cpus_per_trial", 2)),
        Case("--jobs 0", "--jobs", digits, args=("--jobs", "0")),
        Case("--jobs with ray", "--jobs", digits, args=("--backend", "ray", "--jobs", "2")),
        Case("search.jobs with ray", "search.jobs", changed("search.jobs", 2, changed("search.backend", "ray"))),
        Case("--gpus-per-trial with optuna", "--gpus-per-trial", digits, args=("--gpus-per-trial", "0.5")),
    ]


def devices() -> list[Case]:
    """GPUs this machine (the CI's, the developers') does not have, and misspelt devices and precisions."""
    ray = changed("search.backend", "ray")
    gpus = torch.cuda.device_count()  # on a machine with GPUs, the ones it has are good input
    absent = [v for v in ("cuda", "cuda:0", "cuda:7") if gpus == 0 or (v == "cuda:7" and gpus < 8)]
    found = [Case(f"training.device = {v!r}", "training.device", changed("training.device", v))
             for v in (*[a for a in absent if a != "cuda:0"], "gpu", "cuda:x", 3, "", "CPU")]
    found += [Case(f"measure.device = {v!r}", "measure.device", changed("measure.device", v))
              for v in (*[a for a in absent if a != "cuda:7"], "auto", "tpu", 1.5)]
    found += [Case(f"training.precision = {v!r}", "training.precision", changed("training.precision", v))
              for v in ("fp8", "float16", 16, True)]
    return found + [
        Case("search.gpus_per_trial with optuna", "search.gpus_per_trial", changed("search.gpus_per_trial", 0.5)),
        Case("gpus_per_trial 1.5", "search.gpus_per_trial", changed("search.gpus_per_trial", 1.5, ray)),
        Case("gpus_per_trial absurd", "search.gpus_per_trial", changed("search.gpus_per_trial", 10**6, ray)),
        Case("cuda on ray without a GPU share", "training.device", changed("training.device", "cuda", ray)),
        Case("cuda:1 on ray", "training.device",
             changed("training.device", "cuda:1", changed("search.gpus_per_trial", 0.5, ray))),
        Case("measure on cuda on ray without a GPU share", "measure.device", changed("measure.device", "cuda", ray)),
    ]


def settings_against_data() -> list[Case]:
    """Settings that are valid alone but cannot fit the data: found before any training."""
    return [
        Case("probe larger than the training split allows", "distill.probe_size",
             distill_with(weighting="adaptive", probe_size=5000)),
        Case("a searched probe that can exceed the split", "distill.probe_size",
             distill_with(temperature_schedule="gap", probe_size={"int": [100, 5000]})),
    ]


def messages() -> list[Case]:
    return [
        Case("layer_bits key not a layer name", "quantize.layer_bits",
             changed("pipeline.quantize.layer_bits", {True: 8}, changed("pipeline.quantize.bits", 8))),
        Case("min above max", "constraints.size_bytes",
             changed("constraints", {"size_bytes": {"min": 5e5, "max": 1e5}})),
        Case("min and max, one unknown", "constraints.size_bytes",
             changed("constraints", {"size_bytes": {"min": 5, "most": 1e5}})),
    ]


def distill_with(**settings: Any) -> dict:
    config = digits_config()
    next(step for step in config["pipeline"] if "distill" in step)["distill"].update(settings)
    return config


def distillation() -> list[Case]:
    """Settings that are each valid but do not fit together, or do not fit the models."""
    ensemble = changed("teacher.ensemble", [{"seed": 1}], distill_with(ensemble="mean"))
    return [
        Case("all loss weights zero", "distill.soft_weight", distill_with(soft_weight=0, hard_weight=0)),
        Case("a searched weight range that reaches all zero", "distill.soft_weight",
             distill_with(soft_weight={"float": [0, 1]}, hard_weight=0)),
        Case("feature layer missing in the student", "distill.feature_layers",
             distill_with(feature_weight=1.0, feature_layers=["9:1"])),
        Case("feature layer missing in the teacher", "distill.feature_layers",
             distill_with(feature_weight=1.0, feature_layers=["1:77"])),
        Case("attention with an MLP teacher", "distill.attention_weight", distill_with(attention_weight=1.0)),
        Case("ensemble without other teachers", "distill.ensemble", distill_with(ensemble="mean")),
        Case("ensemble with method ema", "distill.ensemble", changed("pipeline.distill.method", "ema", ensemble)),
        Case("features with method dml", "distill.feature_weight", distill_with(method="dml", feature_weight=1)),
        Case("pseudo-labels with method ema", "distill.label_fraction", distill_with(method="ema", label_fraction=.1)),
        Case("the controller without a teacher", "distill.weighting", distill_with(method="ema", weighting="adaptive")),
        Case("the gap schedule without a teacher", "distill.temperature_schedule",
             distill_with(method="dml", temperature_schedule="gap")),
        Case("a searched method that reaches ema under the controller", "distill.weighting",
             distill_with(method={"choice": ["kd", "ema"]}, weighting="adaptive")),
        Case("a schedule under the controller", "distill.temperature_schedule",
             distill_with(weighting="adaptive", temperature_schedule="cosine")),
        Case("teacher.ensemble not a list", "teacher.ensemble", changed("teacher.ensemble", {"seed": 1})),
        Case("teacher.ensemble empty", "teacher.ensemble", changed("teacher.ensemble", [])),
        Case("teacher.ensemble unknown key", "teacher.ensemble[0]", changed("teacher.ensemble", [{"sed": 1}])),
        Case("teacher.ensemble bad seed", "teacher.ensemble[0].seed", changed("teacher.ensemble", [{"seed": -1}])),
        Case("teacher.ensemble bad family", "teacher.ensemble[0].arch", changed("teacher.ensemble",
                                                                              [{"family": "rnn"}])),
        Case("teacher.ensemble missing checkpoint", "teacher.ensemble[0].path",
             changed("teacher.ensemble", [{"path": "nope.pt"}])),
    ]


def unknown_names() -> list[Case]:
    return [
        Case("unknown top-level key", "<config>", changed("studnet", {})),
        Case("unknown data key", "data", changed("data.pth", "x.npz")),
        Case("unknown teacher key", "teacher", changed("teacher.width", 3)),
        Case("unknown student knob", "student.heads", changed("student.heads", 4)),
        Case("unknown compressor", "pipeline", changed("pipeline", [{"sqeeze": {}}])),
        Case("unknown compressor setting", "quantize.bitz", changed("pipeline.quantize.bitz", 8)),
        Case("unknown objective", "objectives.acc", changed("objectives", {"acc": "maximize"})),
        Case("unknown constraint metric", "constraints.acc", changed("constraints", {"acc": {"min": 0.5}})),
        Case("unknown direction", "objectives.accuracy", changed("objectives", {"accuracy": "up"})),
        Case("unknown bound kind", "constraints.size_bytes", changed("constraints", {"size_bytes": {"between": 1}})),
        Case("unknown search key", "search", changed("search.sampelr", "tpe")),
        Case("unknown measure key", "measure", changed("measure.thread", 2)),
        Case("unknown training key", "training", changed("training.batchsize", 64)),
        Case("unknown teacher arch setting", "teacher.arch.heads", changed("teacher.arch.heads", 2)),
    ]


def inconsistent() -> list[Case]:
    digits = digits_config()
    return [
        Case("fractions leave no training data", "data.val_fraction",
             changed("data.test_fraction", 0.45, changed("data.val_fraction", 0.5))),
        Case("population_size with tpe", "search.population_size", changed("search.sampler", "tpe")),
        Case("population_size with random", "search.population_size", changed("search.sampler", "random")),
        Case("asha without ray", "search.scheduler", changed("search.scheduler", "asha")),
        Case("a share of the teacher's accuracy above 1", "search.min_accuracy_share",
             changed("search.min_accuracy_share", 1.5)),
        Case("quantize before prune", "pipeline", changed("pipeline", [digits["pipeline"][0], digits["pipeline"][2],
                                                                        digits["pipeline"][1]])),
        Case("a compressor twice", "pipeline", changed("pipeline", ["distill", "distill", "quantize"])),
        Case("cnn deeper than the image allows", "student.depth",
             changed("student", {"family": "cnn", "depth": 4, "channels": 4})),
        Case("cnn teacher deeper than the image allows", "teacher.arch.depth",
             changed("teacher.arch", {"depth": 5}, changed("teacher.family", "cnn"))),
        budget("size budget below zero", "size_bytes", "max", -5),
        budget("accuracy floor above one", "accuracy", "min", 1.5),
        budget("latency budget of zero", "latency_ms", "max", 0),
        budget("non-finite budget", "size_bytes", "max", INF),
        Case("empty pipeline", "pipeline", changed("pipeline", [])),
        Case("no data source", "data", changed("data", {"val_fraction": 0.2})),
    ]


def budget(name: str, metric: str, kind: str, value: float) -> Case:
    return Case(name, f"constraints.{metric}.{kind}", changed("constraints", {metric: {kind: value}}))


def absurd_sizes() -> list[Case]:
    return [
        Case("student width up to 1e12", "student", changed("student.width", {"int": [16, 10**12]})),
        Case("fixed student width 1e10", "student", changed("student.width", 10**10)),
        Case("student depth 1e6", "student.depth", changed("student.depth", 10**6)),
        Case("teacher width 1e9", "teacher.arch", changed("teacher.arch.width", 10**9)),
        Case("cnn student with 1e9 channels", "student",
             changed("student", {"family": "cnn", "depth": 2, "channels": 10**9})),
        Case("measure batch 1e9", "measure.batch", changed("measure.batch", 10**9)),
        Case("training batch 1e12", "training.batch_size", changed("training.batch_size", 10**12)),
    ]


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefg", "bcdefgh", strict=True))


def yaml_files() -> list[Case]:
    valid = yaml.safe_dump(digits_config())
    return [
        Case("YAML bomb", "expands to more than", BOMB),
        Case("duplicate top-level key", "repeats the key 'seed'", valid + "seed: 3\n"),
        Case("duplicate nested key", "repeats the key 'name'", "data:\n  name: digits\n  name: fashion_mnist\n"),
        Case("not UTF-8", "is not UTF-8 text", b"\xff\xfe\x00binary\x9c"),
        Case("oversized file", "is larger than an experiment file can be", valid + "#" * (1 << 20)),
        Case("empty file", "<config>", ""),
        Case("a list", "<config>", "- a\n- b\n"),
        Case("a scalar", "<config>", "42\n"),
        Case("malformed YAML", "is not valid YAML", "name: [unclosed"),
        Case("tab indentation", "is not valid YAML", "data:\n\tname: digits\n"),
        Case("python object tag", "is not valid YAML", "name: !!python/object/apply:os.system ['true']\n"),
    ]


def npz(**arrays: Any) -> Callable[[Path], None]:
    return lambda where: np.savez(where / "d.npz", **arrays)


def raw_file(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda where: (where / name).write_bytes(content)


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def idx_dir(images: bytes, labels: bytes) -> Callable[[Path], None]:
    def write(where: Path) -> None:
        (where / "idx").mkdir()
        for prefix in ("train", "t10k"):
            (where / "idx" / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
            (where / "idx" / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return write


def data_files() -> list[Case]:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 8)).astype(np.float32), np.arange(200) % 3
    with_nan, with_inf = x.copy(), x.copy()
    with_nan[3, 2], with_inf[5, 1] = NAN, INF
    npz_config = changed("data", {"path": "d.npz", "val_fraction": 0.2})
    npz_config["student"] = {"family": "mlp", "depth": 1, "width": 16}
    npz_config["teacher"]["arch"] = {"depth": 1, "width": 16}
    both = changed("data.test_path", "t.npz", npz_config)

    def case(name: str, files: Callable[[Path], None], config: dict = npz_config, key: str = "data") -> Case:
        return Case(name, key, config, files)

    return [
        case("garbage bytes", raw_file("d.npz", b"this is not a zip file")),
        case("empty file", raw_file("d.npz", b"")),
        case("truncated npz", lambda w: (npz(X=x, y=y)(w), _truncate(w / "d.npz", 300))),
        case("no y", npz(X=x)),
        case("no X", npz(y=y)),
        case("X of strings", npz(X=np.array([["a"] * 8] * 200), y=y)),
        case("X of objects", npz(X=np.array([{"a": 1}] * 200, dtype=object), y=y)),
        case("complex X", npz(X=x.astype(np.complex64), y=y)),
        case("NaN in X", npz(X=with_nan, y=y)),
        case("inf in X", npz(X=with_inf, y=y)),
        case("1-D X", npz(X=x[:, 0], y=y)),
        case("5-D X", npz(X=x.reshape(200, 1, 2, 2, 2), y=y)),
        case("no rows", npz(X=x[:0], y=y[:0])),
        case("length mismatch", npz(X=x, y=y[:150])),
        case("2-D y", npz(X=x, y=np.stack([y, y], 1))),
        case("fractional labels", npz(X=x, y=y + 0.5)),
        case("negative labels", npz(X=x, y=y - 1)),
        case("NaN labels", npz(X=x, y=np.where(y == 0, NAN, y))),
        case("one class", npz(X=x, y=np.zeros(200, dtype=int))),
        case("too few samples", npz(X=x[:5], y=y[:5])),
        case("data path is a directory", lambda w: (w / "d.npz").mkdir()),
        case("missing data file", lambda w: None, key="data.path"),
        case("test file of another shape", lambda w: (npz(X=x, y=y)(w), np.savez(w / "t.npz", X=x[:, :5], y=y)),
             both, key="data.test_path"),
        case("test file unreadable", lambda w: (npz(X=x, y=y)(w), (w / "t.npz").write_bytes(b"junk")), both),
        case("idx with a bad magic number", idx_dir(b"\x01\x02\x03\x04", b"\x00\x00\x08\x01"),
             changed("data", {"name": "fashion_mnist", "dir": "idx"})),
        case("truncated idx", idx_dir(bytes([0, 0, 8, 3]) + (100).to_bytes(4, "big") * 3 + b"\x00" * 50,
                                      bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\x00" * 100),
             changed("data", {"name": "fashion_mnist", "dir": "idx"})),
        case("idx dir missing files", lambda w: (w / "idx").mkdir(),
             changed("data", {"name": "fashion_mnist", "dir": "idx"}), key="data.dir"),
        case("idx images and labels of different lengths",
             idx_dir(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (4).to_bytes(4, "big") * 2 + b"\x00" * 160,
                     bytes([0, 0, 8, 1]) + (9).to_bytes(4, "big") + b"\x00" * 9),
             changed("data", {"name": "fashion_mnist", "dir": "idx"}), key="data.dir"),
        case("train labels indices, test labels names",
             lambda w: (npz(X=x, y=y)(w), np.savez(w / "t.npz", X=x, y=np.array(["a", "b", "c", "d"] * 50))),
             both, key="data.test_path"),
        case("train labels names, test labels indices",
             lambda w: (npz(X=x, y=np.array(["a", "b", "c", "d"] * 50))(w), np.savez(w / "t.npz", X=x, y=y)),
             both, key="data.test_path"),
        case("a plain text file as data", raw_file("d.npz", b"0.1 0.2 0.3\n0.4 0.5 0.6\n"), key="data.path"),
        case("a text file named .txt", raw_file("d.txt", b"1,2,3\n"), changed("data.path", "d.txt", npz_config),
             key="data.path"),
    ]


CASES = cases()


def test_there_are_at_least_two_hundred_cases() -> None:
    assert len(CASES) >= 200


def snapshot(where: Path) -> dict[str, int]:
    return {str(p.relative_to(where)): p.stat().st_size for p in where.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case: Case, tmp_path: Path, capsys) -> None:
    config = case.write(tmp_path)
    before = snapshot(tmp_path)
    trials = () if any(a.startswith("--tr") for a in case.args) else ("--trials", "1")
    assert main(["search", str(config), *trials, *case.args]) == 2
    one_line(capsys.readouterr().err, case.key)
    assert snapshot(tmp_path) == before  # no squeezer.db, mlflow.db, artifacts or cached teacher


READ_ONLY = [  # commands that only read a store: a missing or wrong one is refused, and none is created
    ("export, no tracking store", "--tracking-uri", ["export", "--study-name", "digits", "--trial", "0", "--out", "o"]),
    ("export, unknown scheme", "--tracking-uri", ["export", "--study-name", "digits", "--trial", "0", "--out", "o",
                                                  "--tracking-uri", "bogus://x"]),
    ("export --out an existing file", "--out", ["export", "--study-name", "digits", "--trial", "0", "--out",
                                                "store.db", "--tracking-uri", "sqlite:///store.db"]),
    ("export --out under a file", "--out", ["export", "--study-name", "digits", "--trial", "0", "--out",
                                            "store.db/model", "--tracking-uri", "sqlite:///store.db"]),
    ("export, negative trial", "--trial", ["export", "--study-name", "digits", "--trial", "-1", "--out", "o"]),
    ("export, unknown format", "--format", ["export", "--study-name", "digits", "--trial", "0", "--out", "o",
                                            "--format", "tflite"]),
    ("export, an SQLite file that is not an MLflow store", "--tracking-uri", [
        "export", "--study-name", "digits", "--trial", "0", "--out", "o",
                                               "--tracking-uri", "sqlite:///store.db"]),
    ("pareto, no storage", "--storage", ["pareto", "--study-name", "digits"]),
    ("pareto, storage a text file", "--storage", ["pareto", "--study-name", "digits", "--storage",
                                                  "sqlite:///notes.txt"]),
    ("ui, unknown scheme", "--tracking-uri", ["ui", "--tracking-uri", "bogus://x"]),
    ("ui, no tracking store", "--tracking-uri", ["ui"]),
    ("ui, silent server", "--tracking-uri", ["ui", "--tracking-uri", "http://127.0.0.1:1"]),
    ("ui, port out of range", "--port", ["ui", "--tracking-uri", "sqlite:///store.db", "--port", "70000"]),
    ("ui, a database of another kind", "--tracking-uri", ["ui", "--tracking-uri", "sqlite:///store.db"]),
    ("pareto, a database of another kind", "--storage", ["pareto", "--study-name", "digits", "--storage",
                                                          "sqlite:///store.db"]),
    ("no command", "COMMAND", []),
    ("unknown command", "COMMAND", ["serch"]),
]


@pytest.mark.parametrize("name, key, argv", READ_ONLY, ids=[c[0] for c in READ_ONLY])
def test_commands_that_read_a_store_refuse_a_bad_one_and_write_nothing(name: str, key: str, argv: list[str],
                                                                       tmp_path: Path, capsys) -> None:
    _sqlite_file(tmp_path / "store.db")
    (tmp_path / "notes.txt").write_text("not a database")
    before = snapshot(tmp_path)
    assert main(argv) == 2
    one_line(capsys.readouterr().err, key)
    assert snapshot(tmp_path) == before
