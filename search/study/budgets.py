"""Budgets no recipe of the space can meet, refused before the study starts.

A student's size and speed are known before training (``trial.run.cheap_metrics``: the pipeline's transforms on the
untrained student, deployed and measured). The smallest value a budget's metric reaches is searched section by
section: each section of the joint space (the student, then each pipeline step) is set to the one of its boundary
points (every knob at each of its extremes, one at a time; each option of a choice) that gives the least, the others
held where the search left them. A budget above that is refused in one line, before any study or run is written."""

from __future__ import annotations

import math
from typing import Any

from squeezer import compressors
from squeezer.search.errors import ConfigError
from squeezer.search.config.objectives import CHEAP
from squeezer.search.results.report import fmt, human_bytes, recipe
from squeezer.search.trial.recipe import flatten
from squeezer.search.trial.run import UNBUILDABLE, cheap_metrics, student
from squeezer.search.trial.benches import Bench
from squeezer.spaces import boundary_points

#: A measured latency varies by a few per cent between runs (more on a shared machine): a latency budget is refused
#: only when the fastest recipe is this much slower than it.
LATENCY_SLACK = 1.25


def check_reachable(bench: Bench) -> None:
    """Raise ``ConfigError`` for the first budget on a size or speed metric that no recipe of the space meets."""
    budgets = [c for c in bench.config.constraints if c.upper and c.metric in CHEAP]
    for budget in budgets:
        value, params = smallest(bench, budget.metric)
        if math.isinf(value):
            continue  # no recipe could be built here: the trials say why
        slack = LATENCY_SLACK if budget.metric.startswith("latency") else 1.0
        if value > budget.bound * slack:
            shown = human_bytes(value) if budget.metric == "size_bytes" else fmt(value)
            raise ConfigError(f"constraints.{budget.metric}.max", f"cannot be met by any recipe of the space: the "
                              f"smallest reachable is {shown} ({recipe(flatten(params))}); raise the budget or widen "
                              "the space", budget.bound)


def smallest(bench: Bench, metric: str) -> tuple[float, dict[str, dict[str, Any]]]:
    """The least ``metric`` found over the space's boundary points, section by section, and the recipe reaching it."""
    config = bench.config
    sections = {"student": config.student, **{step.name: step.space for step in config.pipeline
                                              if _changes_the_model(step.name, step.space)}}
    params = {section: boundary_points(space)[0] for section, space in sections.items()}
    params.update({step.name: boundary_points(step.space)[0] for step in config.pipeline if step.name not in params})
    best = _measure(bench, params, metric)
    for section, space in sections.items():
        for point in boundary_points(space)[1:]:
            value = _measure(bench, {**params, section: point}, metric)
            if value < best:
                best, params = value, {**params, section: point}
    return best, params


def _changes_the_model(name: str, space: Any) -> bool:
    """Whether a step's untrained transform changes the model (distillation only trains: its size stays)."""
    return compressors.get(name)(boundary_points(space)[0]).untrained() is not None


def _measure(bench: Bench, params: dict[str, dict[str, Any]], metric: str) -> float:
    try:
        model, ctx = student(bench, params, seed=0)
        return cheap_metrics(bench, model, params, ctx)[metric]
    except UNBUILDABLE:  # a recipe that cannot be built reaches nothing; its trials say why
        return float("inf")

