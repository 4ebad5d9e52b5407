"""The metrics a trial measures, which of them the study optimises (name -> direction), and hard budgets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from squeezer.search.errors import ConfigError

#: Every metric a trial reports, with the direction that is better.
METRICS: dict[str, str] = {
    "accuracy": "maximize",        # of the deployed artifact on the validation split, which no trial trains on
    "f1_macro": "maximize",
    "size_bytes": "minimize",      # bytes of the deployed artifact (model.onnx, or the state dict model.pt)
    "latency_ms": "minimize",      # median batch-1 latency in the runtime, after warm-up, timed against the teacher
    "latency_raw_ms": "minimize",  # the same, its plain median (without the teacher's reference)
    "latency_p90_ms": "minimize",
    "latency_batch_ms": "minimize",  # median latency at measure.batch
    "latency_batch_p90_ms": "minimize",
    "throughput": "maximize",      # samples per second at measure.batch
    "params": "minimize",          # non-zero weights
    "flops": "minimize",           # of one batch-1 forward pass
    # causal language models (``latency_ms``: per generated token at batch 1 with the KV cache; ``throughput``:
    # generated tokens per second at measure.batch)
    "perplexity": "minimize",      # on the validation text, of the deployed weights
    "task_accuracy": "maximize",   # data.task_path's questions: the most likely choice is the answer
    "ttft_ms": "minimize",         # time to the first token of a prompt of measure.prompt_tokens
    "non_embedding_params": "minimize",
}
#: The metric holding each noisy objective's measurement error, in its units: accuracy's standard error over the
#: validation samples; a latency's half-width of its ~95 % confidence interval (rounds paired with the teacher's).
#: Two values closer than their errors combined are a tie on the front (``results.pareto``); bytes and counts are exact.
ERRORS = {"accuracy": "accuracy_se", "latency_ms": "latency_ci_ms", "latency_batch_ms": "latency_batch_ci_ms"}
METRIC_RANGES = {"accuracy": (0.0, 1.0), "f1_macro": (0.0, 1.0), "perplexity": (1.0, math.inf),
                 "task_accuracy": (0.0, 1.0)}  # the others lie in [0, inf)
#: The metrics timed at measure.batch (the rest at batch 1).
BATCH_METRICS = ("latency_batch_ms", "latency_batch_p90_ms", "throughput")
#: The cheap metrics that are counted, not timed: exact, and known at no cost.
COUNTS = ("size_bytes", "params", "flops", "non_embedding_params")
#: Metrics that training does not change (much): known from the untrained compressed student, before training.
CHEAP = ("size_bytes", "params", "flops", "non_embedding_params", "latency_ms", "latency_raw_ms", "latency_p90_ms",
         "latency_batch_ms", "latency_batch_p90_ms", "throughput", "ttft_ms")


def standard_error(accuracy: float, samples: int) -> float:
    """The standard error of an accuracy measured on ``samples`` examples: sqrt(a (1 - a) / n) (0 without samples)."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / samples) if samples else 0.0


@dataclass(frozen=True)
class Quality:
    """What a study's students are judged by against their teacher: a classifier's accuracy (higher is better), a
    language model's perplexity (lower is better); measured on the validation split by the search, on the test
    split for the front (``test_metric``)."""

    metric: str
    higher_is_better: bool

    @property
    def test_metric(self) -> str:
        return f"test_{self.metric}"

    def share(self, value: float, teacher: float) -> float:
        """How much of the teacher's quality ``value`` keeps: accuracy over the teacher's, or the teacher's
        perplexity over this one's (1: as good as the teacher)."""
        return value / max(teacher, 1e-12) if self.higher_is_better else teacher / max(value, 1e-12)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b

    @property
    def val_metric(self) -> str:
        """The name training reports it under, suffixed to its step (``distill.val_accuracy``,
        ``lm_distill.val_perplexity``)."""
        return f"val_{self.metric}"

    def score(self, value: float) -> float:
        """A scale on which higher is better and differences compare across trials: accuracy itself; minus the log
        of a perplexity (the mean cross-entropy, in nats)."""
        return value if self.higher_is_better else -math.log(max(value, 1.0))

    def score_error(self, value: float, samples: int) -> float:
        """The standard error of ``score(value)`` over ``samples`` validation samples: accuracy's binomial one; 0 for
        perplexity (its per-token spread is not kept)."""
        return standard_error(value, samples) if self.higher_is_better else 0.0


ACCURACY, PERPLEXITY = Quality("accuracy", True), Quality("perplexity", False)


def only_quality_trained(objectives: Mapping[str, str], quality: Quality) -> bool:
    """Whether ``quality`` (the kind of model's: accuracy, or a language model's perplexity) is the one objective that
    training changes: then a trial's other objectives are known before it trains, which screening and halving rely
    on."""
    return [name for name in objectives if name not in CHEAP] == [quality.metric]


def quality_of(metrics: Mapping[str, Any]) -> Quality:
    """The quality a study judges by, from any of its metric mappings (the teacher's, a trial's, the objectives):
    perplexity where it is measured, else accuracy."""
    return PERPLEXITY if "perplexity" in metrics else ACCURACY


@dataclass(frozen=True)
class Constraint:
    """A hard budget such as ``size_bytes <= 200000``; trials that break it never enter the Pareto front."""

    metric: str
    bound: float
    upper: bool = True  # True: metric <= bound; False: metric >= bound

    def violation(self, metrics: Mapping[str, float]) -> float:
        """How far ``metrics`` are over the budget; <= 0 means satisfied (Optuna's convention)."""
        value = metrics[self.metric]
        return value - self.bound if self.upper else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric} {'<=' if self.upper else '>='} {self.bound:g}"


def parse_objectives(raw: Any, defaults: Mapping[str, str]) -> dict[str, str]:
    """``{metric: maximize|minimize}``; by default ``defaults`` (the kind of model's: its quality against size and
    latency)."""
    if raw is None:
        return dict(defaults)
    if isinstance(raw, list):  # a list of names takes each metric's natural direction
        raw = {name: METRICS.get(name) for name in raw}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("objectives", "must map metric names to maximize/minimize", raw)
    for name, direction in raw.items():
        _known(name, "objectives")
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"objectives.{name}", "must be maximize or minimize", direction)
        if direction != METRICS[name]:  # a known metric's better direction is fixed
            better = "higher" if METRICS[name] == "maximize" else "lower"
            raise ConfigError(f"objectives.{name}", f"must be {METRICS[name]}: a {better} {name} is better", direction)
    return dict(raw)


def parse_constraints(raw: Any) -> tuple[Constraint, ...]:
    """``{metric: {max: v}}``, ``{metric: {min: v}}`` or both bounds of one metric: budgets."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError("constraints", "must map metric names to {max: value} and/or {min: value}", raw)
    found = []
    for name, bound in raw.items():
        _known(name, "constraints")
        if not isinstance(bound, dict) or not bound or set(bound) - {"max", "min"}:
            raise ConfigError(f"constraints.{name}", "must be {max: value}, {min: value} or both", bound)
        low, high = METRIC_RANGES.get(name, (0.0, math.inf))
        for kind, value in sorted(bound.items()):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ConfigError(f"constraints.{name}.{kind}", "must be a finite number", value)
            if (kind == "max" and value <= low) or (kind == "min" and value > high):
                raise ConfigError(f"constraints.{name}.{kind}", f"no model can meet it: {name} lies in "
                                  f"[{low}, {high}]", value)
            found.append(Constraint(name, float(value), upper=kind == "max"))
        if len(bound) == 2 and bound["min"] > bound["max"]:
            raise ConfigError(f"constraints.{name}", "min must not exceed max", bound)
    return tuple(found)


def _known(name: str, key: str) -> None:
    if name not in METRICS:
        raise ConfigError(f"{key}.{name}", f"unknown metric; known metrics are {list(METRICS)}")
