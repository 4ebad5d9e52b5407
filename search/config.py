"""Read and validate an experiment YAML file into an ``ExperimentConfig``; every mistake is one ``ConfigError``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from squeezer import compressors
from squeezer.search.data import STANDARDIZE, TEXT_KEYS, is_text
from squeezer.search.data.images import MAX_SIDE
from squeezer.search.data.tables import is_table
from squeezer.search.data.text import MAX_LENGTH
from squeezer.compressors.device import PRECISIONS
from squeezer.search import hardware
from squeezer.search.backends import BACKENDS
from squeezer.search.samplers import SAMPLERS
from squeezer.search.schedulers import SCHEDULERS, for_backend
from squeezer.search.errors import ConfigError
from squeezer.search.yamlfile import read_yaml
from squeezer.search.objectives import (METRIC_RANGES, METRICS, Constraint, only_accuracy_trained, parse_constraints,
                                        parse_objectives)
from squeezer.search.data import saved
from squeezer.search.data.augment import Augment
from squeezer.search.data.folders import is_listed
from squeezer.search.models import hub, text
from squeezer.search.runtime import RUNTIMES
from squeezer.spaces import Space, SpaceError, boundary_points, parse_space

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
DEFAULT_PIPELINE = ("distill", "prune", "quantize")
TOP_LEVEL = {"name", "seed", "data", "teacher", "student", "pipeline", "objectives", "constraints", "search",
             "measure", "training"}
DATA_KEYS = {"name", "path", "test_path", "dir", "val_fraction", "test_fraction", "train_size", "text_column",
             "label_column", "max_length", "standardize", "image_size", "channels", "given", "feature_columns",
             "augment", "image_column"}
TEACHER_KEYS = {"family", "arch", "path", "epochs", "lr", "ensemble", "model", "torchvision", "kwargs", "weights",
                "given", "program", "hf"}
ENSEMBLE_KEYS = {"family", "arch", "path", "epochs", "lr", "seed"}
MAX_TEACHERS = 16


@dataclass(frozen=True)
class Step:
    """One pipeline stage: a registered compressor and the space of its config."""

    name: str
    space: Space


MAX_SEED = 2**31 - 1 - 10**6  # trial seeds are the seed plus the trial number; NumPy takes 32 bits
#: Upper bounds on sizes: beyond them a value is a typo, and would exhaust memory or time before saying so.
LIMITS = {"search.trials": 10**6, "search.population_size": 10**4, "search.max_concurrent": 10**4,
          "measure.threads": 1024, "measure.warmup": 10**5, "measure.repeats": 10**5, "measure.batch": 1 << 16,
          "training.batch_size": 1 << 20, "training.threads": 1024, "search.jobs": 256, "epochs": 10**5,
          "search.gpus_per_trial": 64,
          "data.train_size": 10**9}
MINIMA = {"search.population_size": 2, "measure.repeats": 2, "measure.warmup": 0}  # NSGA-II breeds pairs; p90 needs 2
TERNARY = {2: "2 (ternary)"}


@dataclass(frozen=True)
class SearchSettings:
    sampler: str | None = None          # squeezer (default where it can judge, else nsga2) | nsga2 | tpe | random
    trials: int = 20
    population_size: int = 8
    timeout_s: float | None = None
    backend: str = "optuna"
    address: str | None = None          # ray: a running cluster to join; default: start a local Ray
    max_concurrent: int | None = None   # ray: trials at once; default: as many as the CPUs allow
    cpus_per_trial: float = 1.0         # ray: CPUs reserved per trial (and torch threads in it)
    gpus_per_trial: float | None = None  # ray: GPUs reserved per trial (fractional: trials share a GPU); none
    scheduler: str | None = None        # pareto (default where it applies) | shadow | asha (ray) | none
    stop_allowance: float = 0.02        # pareto: margin on the accuracy a trial's remaining training may still add
    candidates: int = 16                # squeezer: recipes screened (size, speed before training) per trial
    warm_start: str | None = None       # an earlier study in the same storage: its Pareto members are tried first
    reference: dict[str, float] | None = None  # the hypervolume's reference point (default: from the teacher)
    min_accuracy_share: float = 0.97    # the recommended member keeps this share of the teacher's accuracy, if any does
    jobs: int = 1                       # optuna: processes running trials of the study at once on this machine


@dataclass(frozen=True)
class MeasureSettings:
    """How latency is measured: single-threaded by default so trials running side by side do not skew it."""

    threads: int = 1
    warmup: int = 10
    repeats: int = 50
    batch: int = 64
    runtime: str = "onnxruntime"  # or torch: where the students are deployed, and measured
    device: str = "cpu"           # or cuda (cuda:N): where latency is measured, for models deployed on a GPU


@dataclass(frozen=True)
class TrainingSettings:
    """How trials and the teacher train (``squeezer.search.hardware``)."""

    batch_size: int = 128
    threads: int | None = None  # torch CPU threads per training process; default: the cores shared by the jobs
    device: str = "auto"        # auto (a CUDA GPU when there is one, else the CPU) | cpu | cuda | cuda:N
    precision: str = "fp32"     # fp32 | bf16 | fp16: autocast of the training passes


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    seed: int
    data: dict[str, Any]
    teacher: dict[str, Any]
    student: Space
    pipeline: tuple[Step, ...]
    objectives: dict[str, str]
    constraints: tuple[Constraint, ...]
    search: SearchSettings
    measure: MeasureSettings
    training: TrainingSettings
    raw: dict[str, Any] = field(repr=False, hash=False, compare=False)

    @property
    def batch_size(self) -> int:
        return self.training.batch_size

    def digest(self) -> str:
        """A hash of what the trials depend on, to refuse resuming a study under a changed config."""
        relevant = {k: v for k, v in self.raw.items() if k not in ("search", "name")}
        training = {k: v for k, v in (relevant.pop("training", None) or {}).items() if k not in ("threads", "device")}
        if training:  # threads and the device change the speed, not the recipe
            relevant["training"] = training
        return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_config(path: str | Path) -> ExperimentConfig:
    """Parse and validate the experiment file at ``path``."""
    path = Path(path)
    return parse_config(read_yaml(path), base_dir=path.parent)


def parse_config(raw: Any, base_dir: Path = Path(".")) -> ExperimentConfig:
    """Validate an already-loaded config mapping; relative file paths resolve against ``base_dir``."""
    if not isinstance(raw, dict):
        raise ConfigError("<config>", "must be a YAML mapping of sections", type(raw).__name__)
    _only(raw, TOP_LEVEL, "<config>")
    check_name(raw.get("name"), "name")
    try:
        config = ExperimentConfig(
            name=raw["name"], seed=_int(raw.get("seed", 0), "seed", maximum=MAX_SEED),
            data=_data(raw.get("data"), base_dir), teacher=_teacher(raw.get("teacher"), base_dir),
            student=_student(raw.get("student"), base_dir),
            pipeline=_pipeline(raw.get("pipeline", list(DEFAULT_PIPELINE))),
            objectives=parse_objectives(raw.get("objectives")), constraints=parse_constraints(raw.get("constraints")),
            search=_settings(SearchSettings, raw.get("search"), "search"),
            measure=_settings(MeasureSettings, raw.get("measure"), "measure"),
            training=_settings(TrainingSettings, raw.get("training"), "training"), raw=raw)
    except SpaceError as err:
        raise ConfigError(err.knob, err.rule, err.value) from None
    if "standardize" not in config.data and pretrained_elsewhere(config.teacher):
        config.data["standardize"] = "none"  # the user's trained model expects the data as the user has it
    check_runtime(config)
    return check_search(config)


def pretrained_elsewhere(teacher: Mapping[str, Any]) -> bool:
    """Whether the teacher was trained outside Squeezer (the user's model with its weights, or a Python object):
    it expects the data as the user has it, so the data is not standardised unless ``data.standardize`` says so.
    (A Hugging Face image classifier does its own preprocessing of raw pixels.)"""
    family = teacher.get("family")
    return family in ("given", "program", "hf_image") or (family in ("factory", "torchvision")
                                                           and bool(teacher.get("path")))


def check_runtime(config: ExperimentConfig) -> None:
    """Refuse a quantization the measuring runtime cannot run, naming the supported ones."""
    for step in config.pipeline:
        if step.name != "quantize":
            continue
        for point in boundary_points(step.space):
            bits = [point.get("bits", 8), *dict(point.get("layer_bits") or {}).values()]
            runtime, gpu = RUNTIMES[config.measure.runtime], config.measure.device != "cpu"
            runs = runtime.gpu_bits if gpu else runtime.bits
            if not set(bits) <= set(runs):
                if gpu:
                    raise ConfigError("quantize.bits", f"{runtime.title} runs {list(runs)} bits on a GPU "
                                      f"(measure.device: {config.measure.device})", point.get("bits"))
                lacking = sorted({b for r in RUNTIMES.values() for b in r.bits} - set(runs), reverse=True)
                others = [name for name, r in RUNTIMES.items() if set(bits) <= set(r.bits)]
                raise ConfigError("quantize.bits", f"{runtime.title} on CPU runs {list(runs)} bits; "
                                  f"{' and '.join(TERNARY.get(b, str(b)) for b in lacking)} need measure.runtime: "
                                  f"{' or '.join(others)}", point.get("bits"))
            half = point.get("half", "fp16")
            if point.get("bits") == 16 and half not in runtime.halves:
                others = [name for name, r in RUNTIMES.items() if half in r.halves]
                raise ConfigError("quantize.half", f"{runtime.title} on CPU runs {list(runtime.halves)}; {half} needs "
                                  f"measure.runtime: {' or '.join(others)}", half)


def check_name(name: Any, key: str) -> None:
    """Experiment and study names: letters, digits, '_', '-', '.' (they appear in MLflow filters and file names)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(key, "is required: letters, digits, '_', '-' or '.', starting with a letter or digit", name)


def _data(raw: Any, base_dir: Path) -> dict[str, Any]:
    data = _section(raw, "data", DATA_KEYS)
    if not data.get("name") and not data.get("path") and not data.get("given"):
        raise ConfigError("data", "needs `name` (digits, fashion_mnist or rotten_tomatoes) or `path` (an image folder, "
                          "an .npz with X and y, or a .csv / .jsonl of texts and labels)")
    for key in ("path", "test_path", "dir"):
        if data.get(key):
            data[key] = str((base_dir / str(data[key])).resolve())
    for key in ("name", "path", "test_path", "dir", "text_column", "label_column", "image_column"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"data.{key}", "must be a string", data[key])
    for key in ("val_fraction", "test_fraction"):
        if key in data and not (_is_number(data[key]) and 0 < data[key] < 1):
            raise ConfigError(f"data.{key}", "must be a number in (0, 1)", data[key])
    held_out = data.get("val_fraction", 0.1) + (0 if data.get("test_path") else data.get("test_fraction", 0.2))
    if held_out > 0.9:
        fractions = f"val {data.get('val_fraction', 0.1)} + test {data.get('test_fraction', 0.2)}"
        raise ConfigError("data.val_fraction", "together with data.test_fraction must leave at least 10% of the data "
                          "for training", fractions)
    if "train_size" in data:
        _int(data["train_size"], "data.train_size", minimum=1, maximum=LIMITS["data.train_size"])
    if "max_length" in data:
        _int(data["max_length"], "data.max_length", minimum=2, maximum=MAX_LENGTH)
    for key in ("image_size", "channels"):
        if key in data and not (data.get("path") and Path(data["path"]).is_dir() or is_listed(data)):
            raise ConfigError(f"data.{key}", "is a setting of image folders (data.path: a folder of class folders, "
                              "or a file listing images with image_column)", data[key])
    size = data.get("image_size")
    if size is not None:
        sides = [size] if isinstance(size, int) and not isinstance(size, bool) else size
        if not isinstance(sides, list) or len(sides) not in (1, 2) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= MAX_SIDE for v in sides):
            raise ConfigError("data.image_size", f"must be a side or [H, W], each in [4, {MAX_SIDE}]", size)
    if "channels" in data and data["channels"] not in (1, 3):
        raise ConfigError("data.channels", "must be 1 (grayscale) or 3 (RGB)", data["channels"])
    if "standardize" in data and data["standardize"] not in STANDARDIZE:
        raise ConfigError("data.standardize", f"must be one of {list(STANDARDIZE)} (per feature column or image "
                          "channel; one mean and std for all; none)", data["standardize"])
    if "feature_columns" in data and not (isinstance(data["feature_columns"], list) and data["feature_columns"]
                                          and all(isinstance(c, str) for c in data["feature_columns"])):
        raise ConfigError("data.feature_columns", "must be a list of column names", data["feature_columns"])
    if "feature_columns" in data and "text_column" in data:
        raise ConfigError("data.feature_columns", "is a setting of numeric tables; text_column names text data",
                          data["feature_columns"])
    folder = saved.is_saved(data.get("path"))  # a Hugging Face datasets folder
    given = sorted(TEXT_KEYS & set(data) - ({"label_column"} if is_table(data) or folder or is_listed(data) else set()))
    if given and not is_text(data):
        raise ConfigError(f"data.{given[0]}", "is a setting of text data (rotten_tomatoes, or a .csv / .jsonl path)",
                          data[given[0]])
    if "image_column" in data and not is_listed(data) and (not folder or is_text(data)):
        raise ConfigError("data.image_column", "names the image column of a Hugging Face datasets folder, or the "
                          "column of image paths in a .csv, .jsonl or .parquet file", data["image_column"])
    if "standardize" in data and is_text(data):
        raise ConfigError("data.standardize", "is a setting of feature and image data; text is token ids",
                          data["standardize"])
    if Augment.parse(data.get("augment")) is not None and is_text(data):
        raise ConfigError("data.augment", "flips and crops images; text is token ids", data["augment"])
    return data


def _teacher(raw: Any, base_dir: Path) -> dict[str, Any]:
    teacher = _teacher_by_file(_user_model(_section(raw, "teacher", TEACHER_KEYS), base_dir, "teacher"), base_dir)
    if "weights" in teacher:
        if "path" in teacher:
            raise ConfigError("teacher.weights", "is another name for teacher.path: give one of them",
                              teacher["weights"])
        teacher["path"] = teacher.pop("weights")
    teacher = _teacher_settings(teacher, base_dir, "teacher")
    if not teacher.get("family"):
        raise ConfigError("teacher.family", "is required to build or load the teacher: a family (e.g. mlp or cnn), "
                          "model: \"my_models.py:factory\", or torchvision: NAME")
    teacher.setdefault("arch", {})
    ensemble = teacher.get("ensemble")
    if ensemble is not None:
        if not isinstance(ensemble, list) or not 1 <= len(ensemble) < MAX_TEACHERS:
            raise ConfigError("teacher.ensemble", f"must be a list of 1 to {MAX_TEACHERS - 1} teachers (each a "
                              "mapping of family, arch, path, epochs, lr, seed; unset ones are the main teacher's)",
                              ensemble)
        teacher["ensemble"] = [_teacher_settings(_section(m if m is not None else {}, f"teacher.ensemble[{i}]",
                                                          ENSEMBLE_KEYS), base_dir, f"teacher.ensemble[{i}]")
                               for i, m in enumerate(ensemble)]
    return teacher


def _teacher_by_file(teacher: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """``program: model.pt2``: a ``torch.export`` program, used as exported (family ``program``); ``hf: DIR``: a
    local Hugging Face model directory (family ``hf``)."""
    if "hf" in teacher:
        clash = sorted({"family", "arch", "model", "torchvision", "kwargs", "program"} & set(teacher))
        if clash:
            raise ConfigError(f"teacher.{clash[0]}", "does not go with teacher.hf, which names the model",
                              teacher[clash[0]])
        where = teacher.pop("hf")
        if not isinstance(where, str) or not where:
            raise ConfigError("teacher.hf", "must be a local Hugging Face model directory", where)
        local = base_dir / where  # checked when the study starts (a shipped experiment's may not exist yet)
        model = where if where in text.PACKAGED else str(local.resolve())
        image = any(a.endswith(hub.IMAGE_HEAD) for a in hub.architectures(Path(model)))
        return {**teacher, "family": "hf_image" if image else "hf", "arch": {"model": model}}
    if "program" not in teacher:
        return teacher
    clash = sorted({"family", "arch", "model", "torchvision", "kwargs", "path", "weights", "epochs"} & set(teacher))
    if clash:
        raise ConfigError(f"teacher.{clash[0]}", "does not go with teacher.program: a program is its own "
                          "architecture and weights, used as exported", teacher[clash[0]])
    file = teacher.pop("program")
    if not isinstance(file, str) or not file:
        raise ConfigError("teacher.program", "must be the path of a .pt2 file (torch.export.save)", file)
    path = (base_dir / file).resolve()
    if not path.is_file():
        raise ConfigError("teacher.program", "file not found", str(path))
    return {**teacher, "family": "program", "arch": {"file": str(path)}}


def _teacher_settings(teacher: dict[str, Any], base_dir: Path, key: str) -> dict[str, Any]:
    if teacher.get("path"):
        teacher["path"] = str((base_dir / str(teacher["path"])).resolve())
        if not Path(teacher["path"]).is_file():
            raise ConfigError(f"{key}.path", "file not found; give a state-dict checkpoint, or remove `path` to "
                              "train the teacher from the config", teacher["path"])
    if "epochs" in teacher:
        _int(teacher["epochs"], f"{key}.epochs", minimum=1, maximum=LIMITS["epochs"])
    if "lr" in teacher:
        _positive(teacher["lr"], f"{key}.lr")
    if "seed" in teacher:
        _int(teacher["seed"], f"{key}.seed", maximum=MAX_SEED)
    if "arch" in teacher and not isinstance(teacher["arch"], dict):
        raise ConfigError(f"{key}.arch", "must be a mapping of the family's settings", teacher["arch"])
    return teacher


def _user_model(section: dict[str, Any], base_dir: Path, key: str, own: str = "model") -> dict[str, Any]:
    """``model: "pkg.mod:fn"`` (or ``"file.py:fn"``, relative to the experiment file) or ``torchvision: NAME``, with
    ``kwargs``: the families ``factory`` and ``torchvision`` with those settings."""
    given = [k for k in (own, "torchvision") if k in section]
    if not given:
        if "kwargs" in section:
            raise ConfigError(f"{key}.kwargs", f"goes with {own} or torchvision", section["kwargs"])
        return section
    clash = sorted({"family", "arch", *given[1:]} & set(section))
    if clash:
        raise ConfigError(f"{key}.{given[0]}", f"names the model on its own: drop {key}.{clash[0]}", section[clash[0]])
    kwargs = section.pop("kwargs", None) or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{key}.kwargs", "must be a mapping of the constructor's arguments", kwargs)
    reference = section.pop(given[0])
    if given[0] == own:
        if isinstance(reference, str) and reference.split(":")[0].endswith(".py"):
            where, _, name = reference.partition(":")
            reference = f"{(base_dir / where).resolve()}:{name}"
        section["family"], settings = "factory", {"model": reference, **kwargs}
    else:
        section["family"], settings = "torchvision", {"name": reference, **kwargs}
    if key == "teacher":
        section["arch"] = settings
        return section
    return {**section, **settings}


def _student(raw: Any, base_dir: Path = Path(".")) -> Space:
    if isinstance(raw, dict):
        raw = _user_model(dict(raw), base_dir, "student", own="factory")
    if not isinstance(raw, dict) or "family" not in raw:
        raise ConfigError("student", "needs a `family` (e.g. mlp, teacher, or {choice: {mlp: {...}, cnn: {...}}}), "
                          "or factory: \"my_models.py:student\" or torchvision: NAME", raw)
    return parse_space(raw, "student")


def _pipeline(raw: Any) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("pipeline", "must be a non-empty list of compressor steps, e.g. [distill, prune, quantize]",
                          raw)
    steps = tuple(_step(item, i) for i, item in enumerate(raw))
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ConfigError("pipeline", "each compressor may appear once", names)
    for step in steps[:-1]:
        if compressors.get(step.name).final:
            raise ConfigError("pipeline", f"{step.name!r} must be the last step (its output cannot be trained or "
                              "compressed further)", names)
    return steps


def _step(item: Any, index: int) -> Step:
    if isinstance(item, str):
        item = {item: {}}
    if not isinstance(item, dict) or len(item) != 1:
        raise ConfigError(f"pipeline[{index}]", "must be a compressor name or {name: {settings}}", item)
    (name, settings), = item.items()
    try:
        compressor = compressors.get(name)
    except compressors.UnknownCompressor as err:
        raise ConfigError(f"pipeline[{index}]", str(err)) from None
    space = parse_space(settings or {}, name)
    for point in boundary_points(space):
        try:
            compressor.Config.from_dict(point)
        except compressors.InvalidConfig as err:
            raise ConfigError(f"{name}.{err.field}", err.rule, err.value) from None
        except TypeError as err:
            raise ConfigError(name, f"a setting has the wrong type ({err})", point) from None
    return Step(name, space)


def _settings(cls: type, raw: Any, key: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = _section(raw or {}, key, set(fields))
    for name, value in values.items():
        kind = str(fields[name].type)
        if value is None and "None" in kind:
            continue
        if kind.startswith("int"):
            values[name] = _int(value, f"{key}.{name}", minimum=MINIMA.get(f"{key}.{name}", 1),
                                maximum=LIMITS.get(f"{key}.{name}"))
        elif kind.startswith("float"):
            values[name] = _positive(value, f"{key}.{name}")
        elif kind.startswith("str") and not isinstance(value, str):
            raise ConfigError(f"{key}.{name}", "must be a string", value)
    if "device" in values:
        hardware.check_device(values["device"], f"{key}.device", auto=key == "training")
    if values.get("gpus_per_trial") is not None:
        gpus = values["gpus_per_trial"]
        if gpus > LIMITS["search.gpus_per_trial"] or (gpus > 1 and not gpus.is_integer()):
            raise ConfigError("search.gpus_per_trial", "must be a share of one GPU (0 < x <= 1, e.g. 0.125: eight "
                              f"trials per GPU) or a whole number of GPUs up to {LIMITS['search.gpus_per_trial']}",
                              values["gpus_per_trial"])
    for name, allowed in (("sampler", SAMPLERS), ("backend", BACKENDS), ("scheduler", SCHEDULERS),
                          ("runtime", RUNTIMES), ("precision", PRECISIONS)):
        if name in fields and values.get(name, fields[name].default) not in (*allowed, None):
            raise ConfigError(f"{key}.{name}", f"must be one of {list(allowed)}", values[name])
    return cls(**values)


def check_search(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with its sampler and early stopping decided: ``squeezer`` and ``pareto`` unless asked otherwise,
    where they can judge (accuracy is the one trained objective; ``pareto`` also needs the optuna backend), else
    ``nsga2`` and ``none``; ``pareto``, ``shadow`` and ``squeezer`` are refused where they cannot."""
    search = config.search
    judged = only_accuracy_trained(config.objectives)
    search = dataclasses.replace(search, sampler=search.sampler or ("squeezer" if judged else "nsga2"),
                                 scheduler=search.scheduler or ("pareto" if judged and search.backend == "optuna"
                                                                else "none"))
    config = dataclasses.replace(config, search=search)
    given = config.raw.get("search") or {}
    _check_reference(search.reference, config.objectives)
    if not 0 < search.min_accuracy_share <= 1:
        raise ConfigError("search.min_accuracy_share", "must be in (0, 1]: the share of the teacher's accuracy the "
                          "recommended member keeps", search.min_accuracy_share)
    for option, sampler in (("population_size", "nsga2"), ("candidates", "squeezer")):
        if option in given and search.sampler != sampler:
            raise ConfigError(f"search.{option}", f"is a setting of sampler {sampler}, not of {search.sampler!r}",
                              given[option])
    if not only_accuracy_trained(config.objectives):
        for key, value in (("scheduler", search.scheduler), ("sampler", search.sampler)):
            if value == "squeezer" or (key == "scheduler" and SCHEDULERS[value].judges):
                raise ConfigError(f"search.{key}", "needs objectives whose one trained metric is accuracy "
                                  f"(maximize); these are {config.objectives}", value)
    if "jobs" in given and search.backend != "optuna":
        raise ConfigError("search.jobs", "is a setting of backend optuna; with ray, trials at once are "
                          "search.max_concurrent", given["jobs"])
    for option in ("address", "max_concurrent", "cpus_per_trial", "gpus_per_trial"):
        if option in given and search.backend != "ray":
            raise ConfigError(f"search.{option}", f"is a setting of backend ray, not of {search.backend!r}",
                              given[option])
    if search.scheduler not in for_backend(search.backend):
        raise ConfigError("search.scheduler", f"{search.scheduler} runs with backend "
                          f"{SCHEDULERS[search.scheduler].backend}; with {search.backend}, use "
                          f"{' or '.join(for_backend(search.backend))}", search.scheduler)
    check_hardware(config)
    return config


def check_hardware(config: ExperimentConfig) -> None:
    """The GPUs the config asks for exist: on this machine (backend optuna), or as Tune's GPU share of each trial
    (backend ray: the cluster's GPUs are checked when the study joins it)."""
    training, measure, search = config.training, config.measure, config.search
    if search.backend == "ray":
        for key, value in (("training.device", training.device), ("measure.device", measure.device)):
            if value.startswith("cuda") and not search.gpus_per_trial:
                raise ConfigError(key, "on backend ray needs search.gpus_per_trial: Tune gives each trial its share "
                                  "of a GPU", value)
            if value.startswith("cuda:"):
                raise ConfigError(key, "on backend ray is cuda: Tune assigns each trial its GPU", value)
    else:
        hardware.training_device(training.device, training.precision)
        hardware.resolve(measure.device, "measure.device")
    if measure.device != "cpu":
        runtime = RUNTIMES[measure.runtime]
        if not runtime.on_gpu():
            raise ConfigError("measure.device", f"{runtime.title} needs {runtime.gpu_package} to run on a GPU "
                              f"(pip install {runtime.gpu_package}); what is installed runs on the CPU only",
                              measure.device)

def _check_reference(reference: Any, objectives: Mapping[str, str]) -> None:
    if reference is None:
        return
    if not isinstance(reference, dict) or not reference:
        raise ConfigError("search.reference", "must map objectives to values, e.g. {accuracy: 0.8}", reference)
    for name, value in reference.items():
        if name not in objectives:
            raise ConfigError("search.reference", f"names objectives only ({list(objectives)})", name)
        low, high = METRIC_RANGES.get(name, (0.0, math.inf))
        if not _is_number(value) or not low <= value <= high or (objectives[name] == "minimize" and value == 0):
            rule = "> 0" if objectives[name] == "minimize" else f"in [{low:g}, {high:g}]"
            raise ConfigError(f"search.reference.{name}", f"must be a finite number {rule}", value)


def with_search(config: ExperimentConfig, **overrides: Any) -> ExperimentConfig:
    """``config`` with command-line overrides of its ``search`` section, validated like the file's own values."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config
    raw_search = {**(config.raw.get("search") or {}), **given}
    return check_search(dataclasses.replace(config, search=_settings(SearchSettings, raw_search, "search")))


def _positive(value: Any, key: str) -> float:
    if not _is_number(value) or value <= 0:
        raise ConfigError(key, "must be a finite number > 0", value)
    return float(value)


def _section(raw: Any, key: str, allowed: set[str]) -> dict[str, Any]:
    if raw is None:
        raise ConfigError(key, "section is required")
    if not isinstance(raw, dict):
        raise ConfigError(key, "must be a mapping", raw)
    _only(raw, allowed, key)
    return dict(raw)


def _only(raw: Mapping[str, Any], allowed: set[str], key: str) -> None:
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise ConfigError(f"{key}", f"unknown key {unknown[0]!r}; allowed keys are {sorted(allowed)}")


def _int(value: Any, key: str, minimum: int = 0, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(key, f"must be an integer >= {minimum}", value)
    if maximum is not None and value > maximum:
        raise ConfigError(key, f"must be an integer <= {maximum}", value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["ExperimentConfig", "MeasureSettings", "METRICS", "SearchSettings", "Step", "load_config", "parse_config",
           "with_search"]
