"""The obvious baseline: what a user would do without Squeezer, the teacher as trained, quantized after training.

When the student space holds the teacher's own architecture (``family: teacher``), a new study runs these recipes
first: the teacher copied with its weights and only the ``quantize`` step applied (no distillation, pruning, low
rank or quantization-aware training), once per bit-width in ``BASELINES``. They are trials of the study like any
other (one MLflow run each, exportable), so the Pareto front contains each baseline point or a student that
dominates it.

A baseline trial's only sampled parameter is ``baseline`` (its name in ``BASELINES``): the other knobs do not
apply to it, and ``params`` turns that name back into the recipe that ran.
"""

from __future__ import annotations

from typing import Any, Mapping

from optuna.trial import BaseTrial, FrozenTrial

from squeezer.search import models
from squeezer.spaces import Branch, Choice, Fixed, Space

#: Baseline name -> the quantize step's bit-width: a classifier's, and a language model's (``lm_quantize``: int4 and
#: int8 weights, as the runtime's own tooling builds them — ONNX Runtime GenAI's model builder, as Olive's LLM recipe
#: does).
BASELINES = {"fp16": 16, "int8": 8}
LM_BASELINES = {"int4": 4, "int8": 8}
PARAM = "baseline"  # the sampled parameter; also the nested params' section that marks a baseline recipe
QUANTIZE = "quantize"
LM_QUANTIZE = "lm_quantize"


def names(language_model: bool = False) -> list[str]:
    return list(LM_BASELINES if language_model else BASELINES)


def wanted(student: Space) -> bool:
    """Whether the student space can be the teacher itself: then the baselines are its first trials."""
    knob = student.get("family")
    options = [knob.value] if isinstance(knob, Fixed) else list(knob.options) \
        if isinstance(knob, (Choice, Branch)) else []
    return models.TEACHER in options


def suggest(trial: BaseTrial, language_model: bool = False) -> str:
    """The baseline an enqueued baseline trial was queued with (Optuna returns the fixed value)."""
    return str(trial.suggest_categorical(PARAM, names(language_model)))


def params(pipeline_steps: Mapping[str, Space], name: str, language_model: bool = False) -> dict[str, dict[str, Any]]:
    """The nested params of baseline ``name``: the teacher, and the quantize step with the study's fixed quantize
    settings (``pipeline_steps``: step name -> its space) at the baseline's bit-width, without training."""
    step = LM_QUANTIZE if language_model else QUANTIZE
    space = pipeline_steps.get(step, {})
    fixed = {k: knob.value for k, knob in space.items() if isinstance(knob, Fixed)}
    if language_model:
        return {"student": {"family": models.TEACHER}, step: {**fixed, "bits": LM_BASELINES[name]},
                PARAM: {"recipe": name}}
    return {"student": {"family": models.TEACHER}, step: {**fixed, "bits": BASELINES[name], "qat_epochs": 0},
            PARAM: {"recipe": name}}


def is_baseline(trial: FrozenTrial) -> bool:
    return PARAM in trial.params


def queue(language_model: bool = False) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(params, user_attrs)`` of each baseline trial, for ``study.enqueue_trial``."""
    return [({PARAM: name}, {PARAM: name}) for name in names(language_model)]


__all__ = ["BASELINES", "LM_BASELINES", "PARAM", "names", "is_baseline", "params", "queue", "suggest", "wanted"]
