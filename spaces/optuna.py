"""Translate a space to Optuna: distributions for inspection and define-by-run sampling for a trial."""

from __future__ import annotations

from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import BaseTrial

from squeezer.spaces.knobs import Branch, Choice, Float, Int, Knob, Space
from squeezer.spaces.sampling import leaves, sample


def to_distribution(knob: Knob) -> BaseDistribution:
    """The Optuna distribution of one searched knob (Optuna's bounds are inclusive, like ours)."""
    if isinstance(knob, Int):
        return IntDistribution(knob.low, knob.high, log=knob.log, step=knob.step)
    if isinstance(knob, Float):
        return FloatDistribution(knob.low, knob.high, log=knob.log)
    if isinstance(knob, Choice):
        return CategoricalDistribution(knob.options)
    if isinstance(knob, Branch):
        return CategoricalDistribution(tuple(knob.options))
    raise TypeError(f"a {type(knob).__name__} knob is not searched and has no distribution")


def from_distribution(dist: BaseDistribution) -> Knob:
    """The knob an Optuna distribution stands for (a Branch comes back as the Choice of its option names)."""
    if isinstance(dist, IntDistribution):
        return Int(dist.low, dist.high, dist.log, dist.step)
    if isinstance(dist, FloatDistribution):
        return Float(dist.low, dist.high, dist.log)
    if isinstance(dist, CategoricalDistribution):
        return Choice(tuple(dist.choices))
    raise TypeError(f"no knob for {type(dist).__name__}")


def distributions(space: Space) -> dict[str, BaseDistribution]:
    """Every searched knob of ``space`` as a flat name -> distribution mapping."""
    return {name: to_distribution(knob) for name, knob in leaves(space).items()}


def suggest(trial: BaseTrial, space: Space, prefix: str = "") -> dict[str, Any]:
    """Sample ``space`` in an Optuna trial, define-by-run, so conditional knobs appear only when active."""
    return sample(space, lambda name, knob: _suggest_one(trial, name, knob), prefix)


def _suggest_one(trial: BaseTrial, name: str, knob: Knob) -> Any:
    if isinstance(knob, Int):
        return trial.suggest_int(name, knob.low, knob.high, step=knob.step, log=knob.log)
    if isinstance(knob, Float):
        return trial.suggest_float(name, knob.low, knob.high, log=knob.log)
    if isinstance(knob, (Choice, Branch)):
        return trial.suggest_categorical(name, list(knob.options))
    raise TypeError(f"a {type(knob).__name__} knob is not searched")
