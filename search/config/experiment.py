"""Read and validate an experiment YAML file into an ``ExperimentConfig``; every mistake is one ``ConfigError``. The
sections are checked by ``data_section``, ``teacher_section``, ``model_sections`` (student, pipeline) and
``run_settings`` (search, measure, training), each value by the ``rules``; the checks across sections are here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from squeezer.search import hardware
from squeezer.search.config.data_section import LM_KEYS, data_section
from squeezer.search.data.spec import DataSpec, LmText
from squeezer.search.config.kinds import CAUSAL_LM, CLASSIFIER, ModelKind, foreign, owner
from squeezer.search.config.model_sections import Step, pipeline_steps, student_space
from squeezer.search.config.teacher_section import TeacherSpec, teacher_section
from squeezer.search.config.objectives import (BATCH_METRICS, METRIC_RANGES, METRICS, Constraint, only_quality_trained,
                                               parse_constraints, parse_objectives)
from squeezer.search.config.rules import LIMITS, MAX_SEED, check_name, integer, is_number, only
from squeezer.search.config.run_settings import (TERNARY, MeasureSettings, SearchSettings, TrainingSettings,
                                                 settings_section)
from squeezer.search.config.schedulers import SCHEDULERS, for_backend
from squeezer.search.config.yamlfile import read_yaml
from squeezer.search.errors import ConfigError
from squeezer.search.runtime import RUNTIMES
from squeezer.search.runtime.lm import DEFAULT_LM_RUNTIME, LM_RUNTIMES
from squeezer.spaces import Space, SpaceError, boundary_points

TOP_LEVEL = {"name", "seed", "data", "teacher", "student", "pipeline", "objectives", "constraints", "search",
             "measure", "training"}
@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    seed: int
    data: DataSpec
    teacher: TeacherSpec
    student: Space
    pipeline: tuple[Step, ...]
    objectives: dict[str, str]
    constraints: tuple[Constraint, ...]
    search: SearchSettings
    measure: MeasureSettings
    training: TrainingSettings
    raw: dict[str, Any] = field(repr=False, hash=False, compare=False)

    @property
    def kind(self) -> ModelKind:
        """The kind of model the study compresses (``config.kinds``): a causal language model where its data is
        text in blocks (``LmText``), else a classifier."""
        return CAUSAL_LM if isinstance(self.data, LmText) else CLASSIFIER

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
    only(raw, TOP_LEVEL, "<config>")
    check_name(raw.get("name"), "name")
    try:
        data = raw.get("data")
        teacher = teacher_section(raw.get("teacher"), base_dir,
                                  language_model=isinstance(data, dict) and bool(LM_KEYS & set(map(str, data))))
        lm = teacher.language_model
        kind = CAUSAL_LM if lm else CLASSIFIER
        config = ExperimentConfig(
            name=raw["name"], seed=integer(raw.get("seed", 0), "seed", maximum=MAX_SEED),
            # the user's trained model expects the data as the user has it, unless data.standardize says otherwise
            data=data_section(raw.get("data"), base_dir, "none" if teacher.pretrained_elsewhere else "feature",
                              language_model=lm),
            teacher=teacher,
            student=student_space(raw.get("student"), base_dir, language_model=lm, default=kind.student),
            pipeline=pipeline_steps(raw.get("pipeline", list(kind.pipeline)), task=kind.name),
            objectives=parse_objectives(raw.get("objectives"), kind.objectives),
            constraints=parse_constraints(raw.get("constraints")),
            search=settings_section(SearchSettings, raw.get("search"), "search"),
            measure=settings_section(MeasureSettings, raw.get("measure"), "measure"),
            training=settings_section(TrainingSettings, raw.get("training"), "training"), raw=raw)
    except SpaceError as err:
        raise ConfigError(err.knob, err.rule, err.value) from None
    for name in [*config.objectives, *(c.metric for c in config.constraints)]:
        if name in foreign(config.kind):
            raise ConfigError("objectives" if name in config.objectives else "constraints", f"{name} is "
                              f"{owner(name).title}'s metric; {config.kind.title}'s quality is "
                              f"{config.kind.quality.metric}", name)
    config = KIND_CHECKS[config.kind.name](config)
    return check_search(_batch_rounds(config))


def _classifier(config: ExperimentConfig) -> ExperimentConfig:
    """A classifier is deployed and timed in a runtime of ``runtime.RUNTIMES``, which must run what it is asked (on a
    GPU: with its GPU package)."""
    if config.measure.runtime in LM_RUNTIMES and config.measure.runtime not in RUNTIMES:
        raise ConfigError("measure.runtime", f"{config.measure.runtime} runs language models; a classifier runs in "
                          f"{list(RUNTIMES)}", config.measure.runtime)
    check_runtime(config)
    _check_gpu_package(RUNTIMES[config.measure.runtime], config.measure.device)
    return config


def _check_gpu_package(runtime: Any, device: str) -> None:
    """A runtime (``runtime.RUNTIMES``' or ``runtime.lm.LM_RUNTIMES``') asked to measure on a GPU has its GPU build."""
    if device != "cpu" and not runtime.on_gpu():
        raise ConfigError("measure.device", f"{runtime.title} needs {runtime.gpu_package} to run on a GPU (pip install "
                          f"{runtime.gpu_package}); what is installed runs on the CPU only", device)


def _batch_rounds(config: ExperimentConfig) -> ExperimentConfig:
    """``measure.batch_repeats`` decided: as many rounds as ``measure.repeats`` where a batch latency or the
    throughput is searched on (an objective or a budget), else a fifth of them (a reported figure)."""
    searched = {*config.objectives, *(c.metric for c in config.constraints)}
    if config.measure.batch_repeats is not None or not searched & set(BATCH_METRICS):
        return config
    return dataclasses.replace(config, measure=dataclasses.replace(config.measure,
                                                                   batch_repeats=config.measure.repeats))


def _language_model(config: ExperimentConfig) -> ExperimentConfig:
    """A language model is deployed and timed in a language model's runtime (``runtime.lm``: ONNX Runtime GenAI by
    default), at the bits it runs; its metrics are a language model's."""
    runtime_name = (config.raw.get("measure") or {}).get("runtime") or DEFAULT_LM_RUNTIME
    if runtime_name not in LM_RUNTIMES:
        raise ConfigError("measure.runtime", f"must be one of {list(LM_RUNTIMES)} for a language model",
                          runtime_name)
    runtime, gpu = LM_RUNTIMES[runtime_name], config.measure.device != "cpu"
    runs = runtime.gpu_bits if gpu else runtime.bits
    for step in config.pipeline:
        if step.name != "lm_quantize":
            continue
        for point in boundary_points(step.space):
            bits, group = point.get("bits", 8), point.get("group_size", 32)
            if bits not in runs:
                where = f"on a GPU (measure.device: {config.measure.device})" if gpu else "on the CPU"
                others = [n for n, r in LM_RUNTIMES.items() if bits in (r.gpu_bits if gpu else r.bits)]
                hint = f"; measure.runtime: {' or '.join(others)} runs it" if others else \
                    "; 16-bit weights need measure.device: cuda"
                raise ConfigError("lm_quantize.bits", f"{runtime.title} runs {list(runs)} bits {where}{hint}", bits)
            if bits in (8, 4) and runtime.group_sizes and group not in runtime.group_sizes:
                raise ConfigError("lm_quantize.group_size", f"{runtime.title} takes blocks of "
                                  f"{list(runtime.group_sizes)} input channels", group)
    _check_gpu_package(runtime, config.measure.device)
    for name in [*config.objectives, *(c.metric for c in config.constraints)]:
        if name == "task_accuracy" and config.data.task is None:
            raise ConfigError("objectives" if name in config.objectives else "constraints", "task_accuracy needs "
                              "data.task_path: a JSONL of context, choices and answer", name)
    return dataclasses.replace(config, measure=dataclasses.replace(config.measure, runtime=runtime_name))


#: Each kind of model's checks across sections (``config.kinds``), by its name.
KIND_CHECKS = {CLASSIFIER.name: _classifier, CAUSAL_LM.name: _language_model}


def with_search(config: ExperimentConfig, **overrides: Any) -> ExperimentConfig:
    """``config`` with command-line overrides of its ``search`` section, validated like the file's own values."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config
    raw_search = {**(config.raw.get("search") or {}), **given}
    return check_search(dataclasses.replace(config, search=settings_section(SearchSettings, raw_search, "search")))


# Checks across sections, on the assembled config: the runtime can run the quantization asked, the sampler and early
# stopping are decided, the GPUs asked for exist.

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


def check_search(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with its sampler and early stopping decided: ``squeezer`` and ``pareto`` unless asked otherwise,
    where they can judge (the quality is the one trained objective; ``pareto`` also needs accuracy and the optuna
    backend), else
    ``nsga2`` and ``none``; ``pareto``, ``shadow`` and ``squeezer`` are refused where they cannot."""
    search = config.search
    judged = config.kind.quality if only_quality_trained(config.objectives, config.kind.quality) else None
    stops = judged is not None and judged.metric in SCHEDULERS["pareto"].judges and search.backend == "optuna"
    search = dataclasses.replace(search, sampler=search.sampler or ("squeezer" if judged else "nsga2"),
                                 scheduler=search.scheduler or ("pareto" if stops else "none"))
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
    for option in ("rung_epochs", "reduction_factor"):
        if option in given and search.scheduler != "halving":
            raise ConfigError(f"search.{option}", f"is a setting of scheduler halving, not of {search.scheduler!r}",
                              given[option])
    if search.sampler == "squeezer" and judged is None:
        raise ConfigError("search.sampler", "needs objectives whose one trained metric is the quality (accuracy, or a "
                          f"language model's perplexity); these are {config.objectives}", search.sampler)
    judges = SCHEDULERS[search.scheduler].judges
    if judges and (judged is None or judged.metric not in judges):
        raise ConfigError("search.scheduler", f"needs objectives whose one trained metric is "
                          f"{' or '.join(judges)}; these are {config.objectives}", search.scheduler)
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


__all__ = ["LIMITS", "MAX_SEED", "ExperimentConfig", "MeasureSettings", "METRICS", "SearchSettings", "Step",
           "TrainingSettings", "check_name", "load_config", "parse_config", "with_search"]
