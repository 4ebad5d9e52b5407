"""Read and validate an experiment YAML file into an ``ExperimentConfig``; every mistake is one ``ConfigError``. The
sections are checked by ``sections`` (data, teacher, student, pipeline) and ``settings`` (search, measure,
training), each value by the ``rules``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squeezer.search.errors import ConfigError
from squeezer.search.objectives import METRICS, Constraint, parse_constraints, parse_objectives
from squeezer.search.rules import LIMITS, MAX_SEED, check_name, integer, only
from squeezer.search.sections import (DEFAULT_PIPELINE, Step, data_section, pipeline_steps, pretrained_elsewhere,
                                      student_space, teacher_section)
from squeezer.search.settings import (MeasureSettings, SearchSettings, TrainingSettings, check_runtime, check_search,
                                      settings_section)
from squeezer.search.yamlfile import read_yaml
from squeezer.spaces import Space, SpaceError

TOP_LEVEL = {"name", "seed", "data", "teacher", "student", "pipeline", "objectives", "constraints", "search",
             "measure", "training"}
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
    only(raw, TOP_LEVEL, "<config>")
    check_name(raw.get("name"), "name")
    try:
        config = ExperimentConfig(
            name=raw["name"], seed=integer(raw.get("seed", 0), "seed", maximum=MAX_SEED),
            data=data_section(raw.get("data"), base_dir), teacher=teacher_section(raw.get("teacher"), base_dir),
            student=student_space(raw.get("student"), base_dir),
            pipeline=pipeline_steps(raw.get("pipeline", list(DEFAULT_PIPELINE))),
            objectives=parse_objectives(raw.get("objectives")), constraints=parse_constraints(raw.get("constraints")),
            search=settings_section(SearchSettings, raw.get("search"), "search"),
            measure=settings_section(MeasureSettings, raw.get("measure"), "measure"),
            training=settings_section(TrainingSettings, raw.get("training"), "training"), raw=raw)
    except SpaceError as err:
        raise ConfigError(err.knob, err.rule, err.value) from None
    if "standardize" not in config.data and pretrained_elsewhere(config.teacher):
        config.data["standardize"] = "none"  # the user's trained model expects the data as the user has it
    check_runtime(config)
    return check_search(config)


def with_search(config: ExperimentConfig, **overrides: Any) -> ExperimentConfig:
    """``config`` with command-line overrides of its ``search`` section, validated like the file's own values."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config
    raw_search = {**(config.raw.get("search") or {}), **given}
    return check_search(dataclasses.replace(config, search=settings_section(SearchSettings, raw_search, "search")))


__all__ = ["LIMITS", "MAX_SEED", "ExperimentConfig", "MeasureSettings", "METRICS", "SearchSettings", "Step",
           "TrainingSettings", "check_name", "load_config", "parse_config", "with_search"]
