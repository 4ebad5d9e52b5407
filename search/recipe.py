"""A trial's recipe: the joint space (the student's architecture and every pipeline step's settings) sampled into
nested params (``{'student': {...}, 'prune': {'ratio': 0.3}}``, what a trial runs), and their one flat form
(``{'prune.ratio': 0.3}``, what Optuna and MLflow hold)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import optuna
from optuna.distributions import BaseDistribution

from squeezer.search import baselines
from squeezer.search.config import ExperimentConfig
from squeezer.spaces import Space, sample
from squeezer.spaces.optuna import distributions, suggest


def suggest_params(trial: optuna.trial.BaseTrial, config: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """Sample the joint space: the student's architecture and every pipeline step's settings; or, for a trial
    queued as a baseline (``squeezer.search.baselines``), its recipe."""
    if baselines.PARAM in trial.user_attrs:
        return baselines.params(_steps(config), baselines.suggest(trial))
    return _joint(config, lambda space, prefix: suggest(trial, space, prefix))


def replay_params(config: ExperimentConfig, values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The nested params that flat sampled ``values`` (``{'student.width': 64, ...}``) stand for."""
    if baselines.PARAM in values:
        return baselines.params(_steps(config), values[baselines.PARAM])
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


def flatten(params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{'prune': {'ratio': 0.3}}`` -> ``{'prune.ratio': 0.3}``: the names MLflow and the tables show."""
    return {f"{section}.{key}": value for section, values in params.items() for key, value in values.items()}
