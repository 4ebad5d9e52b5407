"""The obvious baseline: what a user would do without Squeezer, the teacher as trained, quantized after training.

When the student space holds the teacher's own architecture (``family: teacher``), a new study runs these recipes
first: the teacher copied with its weights and only the kind's quantize step applied (no distillation, pruning, low
rank or quantization-aware training), once per bit-width in ``ModelKind.baselines`` (a language model's: int4 and
int8 weights, as the runtime's own tooling builds them — ONNX Runtime GenAI's model builder, as Olive's LLM recipe
does). They are trials of the study like any
other (one MLflow run each, exportable), so the Pareto front contains each baseline point or a student that
dominates it.

A baseline trial's only sampled parameter is ``baseline`` (its name in ``ModelKind.baselines``): the other knobs do not
apply to it, and ``params`` turns that name back into the recipe that ran.
"""

from __future__ import annotations

from typing import Any, Mapping

from optuna.trial import BaseTrial, FrozenTrial

from squeezer.search import models
from squeezer.search.config.kinds import ModelKind
from squeezer.spaces import Branch, Choice, Fixed, Space

PARAM = "baseline"  # the sampled parameter; also the nested params' section that marks a baseline recipe


def names(kind: ModelKind) -> list[str]:
    """The kind of model's baselines (``ModelKind.baselines``: a classifier's fp16 and int8, a language model's int4
    and int8 builds of its teacher)."""
    return list(kind.baselines)


def wanted(student: Space) -> bool:
    """Whether the student space can be the teacher itself: then the baselines are its first trials."""
    knob = student.get("family")
    options = [knob.value] if isinstance(knob, Fixed) else list(knob.options) \
        if isinstance(knob, (Choice, Branch)) else []
    return models.TEACHER in options


def suggest(trial: BaseTrial, kind: ModelKind) -> str:
    """The baseline an enqueued baseline trial was queued with (Optuna returns the fixed value)."""
    return str(trial.suggest_categorical(PARAM, names(kind)))


def params(pipeline_steps: Mapping[str, Space], name: str, kind: ModelKind) -> dict[str, dict[str, Any]]:
    """The nested params of baseline ``name``: the teacher, and the kind's quantize step with the study's fixed
    settings of it (``pipeline_steps``: step name -> its space) at the baseline's bit-width, without training."""
    space = pipeline_steps.get(kind.quantize_step, {})
    fixed = {k: knob.value for k, knob in space.items() if isinstance(knob, Fixed)}
    settings = {**fixed, "bits": kind.baselines[name], **kind.baseline_settings}
    return {"student": {"family": models.TEACHER}, kind.quantize_step: settings, PARAM: {"recipe": name}}


def is_baseline(trial: FrozenTrial) -> bool:
    return PARAM in trial.params


def queue(kind: ModelKind) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(params, user_attrs)`` of each baseline trial, for ``study.enqueue_trial``."""
    return [({PARAM: name}, {PARAM: name}) for name in names(kind)]


__all__ = ["PARAM", "names", "is_baseline", "params", "queue", "suggest", "wanted"]
