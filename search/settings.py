"""The experiment's search, measure and training settings: their fields and defaults, and the checks that decide the
sampler and early stopping and refuse what the backend, the runtime or this machine's GPUs cannot do."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from squeezer.compressors.device import PRECISIONS
from squeezer.search import hardware
from squeezer.search.backends import BACKENDS
from squeezer.search.errors import ConfigError
from squeezer.search.objectives import METRIC_RANGES, only_accuracy_trained
from squeezer.search.rules import LIMITS, MINIMA, integer, is_number, positive, section
from squeezer.search.runtime import RUNTIMES
from squeezer.search.samplers import SAMPLERS
from squeezer.search.schedulers import SCHEDULERS, for_backend
from squeezer.spaces import boundary_points

if TYPE_CHECKING:
    from squeezer.search.config import ExperimentConfig

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
    repeats: int = 1                    # each recipe runs this many times, with its own seed each (mean ± std)


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


def settings_section(cls: type, raw: Any, key: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = section(raw or {}, key, set(fields))
    for name, value in values.items():
        kind = str(fields[name].type)
        if value is None and "None" in kind:
            continue
        if kind.startswith("int"):
            values[name] = integer(value, f"{key}.{name}", minimum=MINIMA.get(f"{key}.{name}", 1),
                                maximum=LIMITS.get(f"{key}.{name}"))
        elif kind.startswith("float"):
            values[name] = positive(value, f"{key}.{name}")
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
        if not is_number(value) or not low <= value <= high or (objectives[name] == "minimize" and value == 0):
            rule = "> 0" if objectives[name] == "minimize" else f"in [{low:g}, {high:g}]"
            raise ConfigError(f"search.reference.{name}", f"must be a finite number {rule}", value)
