"""The rules config values are checked by (integers, positive numbers, mappings of known keys, names) and the bounds
on sizes: beyond them a value is a typo, and would exhaust memory or time before saying so."""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from squeezer.search.errors import ConfigError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


MAX_SEED = 2**31 - 1 - 10**6  # trial seeds are the seed plus the trial number; NumPy takes 32 bits
#: Upper bounds on sizes: beyond them a value is a typo, and would exhaust memory or time before saying so.


LIMITS = {"search.trials": 10**6, "search.population_size": 10**4, "search.max_concurrent": 10**4,
          "measure.threads": 1024, "measure.warmup": 10**5, "measure.repeats": 10**5, "measure.batch": 1 << 16,
          "training.batch_size": 1 << 20, "training.threads": 1024, "search.jobs": 256, "epochs": 10**5,
          "search.gpus_per_trial": 64, "search.repeats": 100, "search.rung_epochs": 10**5,
          "search.reduction_factor": 100,
          "data.train_size": 10**9}


# NSGA-II breeds pairs; p90 needs 2; halving keeps 1/reduction_factor, at most half
MINIMA = {"search.population_size": 2, "measure.repeats": 2, "measure.warmup": 0, "search.reduction_factor": 2}


def check_name(name: Any, key: str) -> None:
    """Experiment and study names: letters, digits, '_', '-', '.' (they appear in MLflow filters and file names)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(key, "is required: letters, digits, '_', '-' or '.', starting with a letter or digit", name)


def positive(value: Any, key: str) -> float:
    if not is_number(value) or value <= 0:
        raise ConfigError(key, "must be a finite number > 0", value)
    return float(value)


def section(raw: Any, key: str, allowed: set[str]) -> dict[str, Any]:
    if raw is None:
        raise ConfigError(key, "section is required")
    if not isinstance(raw, dict):
        raise ConfigError(key, "must be a mapping", raw)
    only(raw, allowed, key)
    return dict(raw)


def only(raw: Mapping[str, Any], allowed: set[str], key: str) -> None:
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise ConfigError(f"{key}", f"unknown key {unknown[0]!r}; allowed keys are {sorted(allowed)}")


def integer(value: Any, key: str, minimum: int = 0, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(key, f"must be an integer >= {minimum}", value)
    if maximum is not None and value > maximum:
        raise ConfigError(key, f"must be an integer <= {maximum}", value)
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
