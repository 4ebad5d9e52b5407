"""A trial's recipe: the joint space (the student's architecture and every pipeline step's settings) sampled into
nested params (``{'student': {...}, 'prune': {'ratio': 0.3}}``, what a trial runs), and their one flat form
(``{'prune.ratio': 0.3}``, what Optuna and MLflow hold)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import optuna
from optuna.distributions import BaseDistribution

from squeezer.search.trial import baselines
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.spaces import Space, describe, grid, sample, size
from squeezer.spaces.optuna import distributions, suggest


#: A trial's user attribute: which run of its recipe it is (``search.repeats``); a repeated trial is not repeated again.
REPEAT = "repeat"


def suggest_params(trial: optuna.trial.BaseTrial, config: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """Sample the joint space: the student's architecture and every pipeline step's settings; or, for a trial
    queued as a baseline (``squeezer.search.trial.baselines``), its recipe."""
    if baselines.PARAM in trial.user_attrs:
        return baselines.params(_steps(config), baselines.suggest(trial, config.kind), config.kind)
    return _joint(config, lambda space, prefix: suggest(trial, space, prefix))


def queue_repeats(trial: optuna.Trial, config: ExperimentConfig) -> None:
    """``search.repeats``: a sampled trial's recipe queued again, k - 1 times (each run gets its trial's own seed);
    a trial that is itself a repeat, or a baseline, is not repeated."""
    if config.search.repeats > 1 and REPEAT not in trial.user_attrs and baselines.PARAM not in trial.user_attrs:
        for repeat in range(1, config.search.repeats):
            trial.study.enqueue_trial(trial.params, user_attrs={REPEAT: repeat})


def recipe_count(config: ExperimentConfig) -> int | None:
    """How many distinct recipes the joint space holds; None where a float range makes it infinite."""
    total = 1
    for space in _spaces(config).values():
        count = size(space)
        if count is None:
            return None
        total *= count
    return total


def every_recipe(config: ExperimentConfig) -> list[dict[str, Any]]:
    """Every recipe of a finite joint space, as the flat params a trial is queued with."""
    recipes: list[dict[str, Any]] = [{}]
    for section, space in _spaces(config).items():
        recipes = [{**recipe, **part} for recipe in recipes for part in grid(space, f"{section}.")]
    return recipes


def space_lines(config: ExperimentConfig) -> list[str]:
    """What the study searches, for a person: each knob with its range or choices, and how many recipes."""
    knobs = [knob for section, space in _spaces(config).items() for knob in describe(space, f"{section}.")]
    count = recipe_count(config)
    head = (f"search space: {len(knobs)} knob(s), " + (f"{count} distinct recipe(s)" if count is not None
                                                       else "infinite (float ranges)"))
    width = max((len(name) for name, _ in knobs), default=0)
    return [head] + [f"  {name:<{width}}  {what}" for name, what in knobs]


def replay_params(config: ExperimentConfig, values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The nested params that flat sampled ``values`` (``{'student.width': 64, ...}``) stand for."""
    if baselines.PARAM in values:
        return baselines.params(_steps(config), values[baselines.PARAM], config.kind)
    return _joint(config, lambda space, prefix: sample(space, lambda name, knob: values[name], prefix))


def joint_distributions(config: ExperimentConfig) -> dict[str, BaseDistribution]:
    """Every searched knob of the student and the pipeline by its flat name, as the study samples them."""
    return {f"{section}.{name}": dist for section, space in _spaces(config).items()
            for name, dist in distributions(space).items()}


def _steps(config: ExperimentConfig) -> dict[str, Space]:
    return {step.name: step.space for step in config.pipeline}


def _spaces(config: ExperimentConfig) -> dict[str, Space]:
    """The joint space's parts by section: the student's, then each step's."""
    return {"student": config.student, **_steps(config)}


def _joint(config: ExperimentConfig, pick: Callable[[Space, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {section: pick(space, f"{section}.") for section, space in _spaces(config).items()}


def recipe_key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A recipe's identity: its flat params, whatever their order."""
    return tuple(sorted((name, repr(value)) for name, value in params.items()))


def flatten(params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{'prune': {'ratio': 0.3}}`` -> ``{'prune.ratio': 0.3}``: the names MLflow and the tables show."""
    return {f"{section}.{key}": value for section, values in params.items() for key, value in values.items()}
