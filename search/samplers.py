"""Optuna samplers by name: the one list of allowed ``search.sampler`` values (config validation reads it), and how
each is made. Budgets reach them through each trial's constraints. ``squeezer`` is ``screening.SqueezerSampler``."""

from __future__ import annotations

from typing import Any, Callable


def _squeezer(search: Any, seed: int) -> Any:
    from squeezer.search.screening import SqueezerSampler

    return SqueezerSampler(seed=seed)


def _random(search: Any, seed: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _tpe(search: Any, seed: int) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def _nsga2(search: Any, seed: int) -> Any:
    import optuna

    return optuna.samplers.NSGAIISampler(population_size=search.population_size, seed=seed)


#: name -> factory(search settings, seed) of an ``optuna.samplers.BaseSampler``
SAMPLERS: dict[str, Callable[[Any, int], Any]] = {"squeezer": _squeezer, "nsga2": _nsga2, "tpe": _tpe,
                                                  "random": _random}


def make(search: Any, seed: int) -> Any:
    """The sampler ``search.sampler`` names, seeded."""
    return SAMPLERS[search.sampler](search, seed)
