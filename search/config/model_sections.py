"""The experiment's student and pipeline sections, checked into what the study builds from (the data and teacher
sections: ``data_section``, ``teacher_section``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from squeezer import compressors
from squeezer.search.errors import ConfigError
from squeezer.search.models import causal
from squeezer.search.models.registry import SEARCHED
from squeezer.spaces import Space, boundary_points, parse_space

DEFAULT_PIPELINE = ("distill", "prune", "quantize")
#: A language model's: Minitron's order (prune the teacher, then distil), then the deployed precision.
DEFAULT_LM_PIPELINE = ("lm_prune", "lm_distill", "lm_quantize")
DEFAULT_LM_STUDENT = {"family": {"choice": {"teacher": {}, "smaller": {}}}}
#: A classifier's students when the config names none (a file without ``student``, ``compress`` without a config):
#: the teacher itself and MLPs of the ``mlp`` family's searched defaults.
DEFAULT_STUDENT = {"family": {"choice": {"teacher": {}, "mlp": {}}}}


@dataclass(frozen=True)
class Step:
    """One pipeline stage: a registered compressor and the space of its config."""

    name: str
    space: Space


def user_model(section: dict[str, Any], base_dir: Path, key: str, own: str = "model") -> dict[str, Any]:
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


def student_space(raw: Any, base_dir: Path = Path("."), language_model: bool = False,
                  default: Mapping[str, Any] = DEFAULT_STUDENT) -> Space:
    """The student section as a space; where the config has none, ``DEFAULT_STUDENT``. A language model's students
    are ``causal``'s families (by default the teacher pruned, or a smaller model of its architecture)."""
    if language_model:
        return _lm_students(copy.deepcopy(dict(default)) if raw is None else raw)
    raw = copy.deepcopy(dict(default)) if raw is None else raw
    if isinstance(raw, dict):
        raw = user_model(dict(raw), base_dir, "student", own="factory")
    if not isinstance(raw, dict) or "family" not in raw:
        raise ConfigError("student", "needs a `family` (e.g. mlp, teacher, or {choice: {mlp: {...}, cnn: {...}}}), "
                          "or factory: \"my_models.py:student\" or torchvision: NAME", raw)
    return parse_space(with_searched_families(raw), "student")


def _lm_students(raw: Any) -> Space:
    if not isinstance(raw, dict) or "family" not in raw:
        raise ConfigError("student", f"needs a `family` of a language model's students ({causal.families()})", raw)
    space = parse_space(with_searched_families(raw, causal.SEARCHED), "student")
    for point in boundary_points(space):
        if point.get("family") not in causal.families():
            raise ConfigError("student.family", f"must be one of {causal.families()} for a language model teacher",
                              point.get("family"))
    return space


def with_searched_families(student: dict[str, Any],
                           searched: Mapping[str, Mapping[str, Any]] = SEARCHED) -> dict[str, Any]:
    """A family named without settings searches its default ranges (``models.SEARCHED``): ``family: cnn`` alone,
    each ``{}`` option of ``family: {choice: {teacher: {}, cnn: {}}}``, each name of ``{choice: [mlp, cnn]}``."""
    family = student["family"]
    if isinstance(family, str):
        return {**searched.get(family, {}), **student} if len(student) == 1 else student
    choice = family.get("choice") if isinstance(family, dict) and len(family) == 1 else None
    if isinstance(choice, list) and len(student) == 1 and all(isinstance(o, str) for o in choice) \
            and len(set(choice)) == len(choice):
        choice = {option: {} for option in choice}
    if isinstance(choice, dict):
        options = {option: dict(searched.get(option, {})) if settings in ({}, None) else settings
                   for option, settings in choice.items()}
        return {**student, "family": {"choice": options}}
    return student


def pipeline_steps(raw: Any, task: str = "classifier") -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("pipeline", "must be a non-empty list of compressor steps, e.g. [distill, prune, quantize]",
                          raw)
    steps = tuple(_step(item, i) for i, item in enumerate(raw))
    for i, step in enumerate(steps):
        if compressors.get(step.name).task != task:
            fitting = [n for n in compressors.available() if compressors.get(n).task == task]
            other = compressors.get(step.name).task.replace("_", " ")
            raise ConfigError(f"pipeline[{i}]", f"{step.name} compresses a {other}; this study's teacher is a "
                              f"{task.replace('_', ' ')}: use {fitting}", step.name)
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
    space = parse_space(settings or dict(compressor.searched), name)
    for point in boundary_points(space):
        try:
            compressor.Config.from_dict(point)
        except compressors.InvalidConfig as err:
            raise ConfigError(f"{name}.{err.field}", err.rule, err.value) from None
        except TypeError as err:
            raise ConfigError(name, f"a setting has the wrong type ({err})", point) from None
    return Step(name, space)
