"""Optuna samplers by name (``config.plugins.SAMPLERS`` lists them): how each is made. Budgets reach them through each
trial's constraints. ``squeezer`` is ``squeezer_sampler.SqueezerSampler``."""

from __future__ import annotations

from typing import Any

import optuna

from squeezer.search.config.plugins import SAMPLERS, resolve
from squeezer.search.study.squeezer_sampler import SqueezerSampler


def squeezer(search: Any, seed: int) -> optuna.samplers.BaseSampler:
    return SqueezerSampler(seed=seed)


def random(search: Any, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def tpe(search: Any, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


def nsga2(search: Any, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(population_size=search.population_size, seed=seed)


def make(search: Any, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler ``search.sampler`` names, seeded."""
    return resolve(SAMPLERS[search.sampler])(search, seed)
