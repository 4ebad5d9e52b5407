"""Early stopping by name: the one list of allowed ``search.scheduler`` values, what each needs (config validation
reads it) and how the backend that runs it makes it. ``pareto`` and ``shadow`` are Squeezer's own rule
(``early_stop.ParetoStop``, judged in each trial's process against the current front; ``shadow`` only records its
verdict); ``halving`` is successive halving over epochs judged on the front (``study.halving``: on Optuna's pruner,
or on Ray Tune's ASHA);
``asha`` is Ray Tune's ASHA on each evaluation's validation quality (accuracy; a language model's perplexity);
``none`` lets every trial finish."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Scheduler:
    backend: str | None  # the one backend it runs on (None: any)
    #: the qualities it compares trials on, as the one trained objective (``objectives.only_quality_trained``); () none
    judges: tuple[str, ...]
    tune: Callable[[str], Any] | None = None  # ray: Tune's scheduler watching that per-epoch metric (higher: better)


def _asha(metric: str) -> Any:
    from ray import tune

    return tune.schedulers.ASHAScheduler(metric=metric, mode="max", grace_period=2)


SCHEDULERS = {"pareto": Scheduler("optuna", ("accuracy",)), "shadow": Scheduler("optuna", ("accuracy",)),
              "halving": Scheduler(None, ("accuracy", "perplexity")),
              "asha": Scheduler("ray", (), _asha), "none": Scheduler(None, ())}


def for_backend(backend: str) -> list[str]:
    """The schedulers that run on ``backend``."""
    return [name for name, s in SCHEDULERS.items() if s.backend in (backend, None)]
