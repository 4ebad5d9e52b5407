"""What Squeezer keeps in Optuna's study storage, written and read here alone (Optuna keeps each as a user attribute
under its key): a trial's record — its metrics, its validation curve, why it failed or was stopped, its MLflow run,
what screening and early stopping saw — and the study's — the teacher's metrics, the TF-IDF baseline's, the
objectives, budgets and config it was opened with, the recommendation, the front's test figures and run names.

Readers take a ``FrozenTrial`` or a study; writers an ``optuna.Trial`` (or ``FrozenTrial`` through the storage) or a
study. A trial's attributes are kept as they were when it ended; the study's are rewritten as it goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from squeezer.search.config.objectives import quality_of

# a trial's keys
METRICS = "metrics"              # every metric measured, by name
FAIL_REASON = "fail_reason"      # why it failed (its first line is what the progress line showed)
STOP_REASON = "stop_reason"      # why it was stopped early
VAL_CURVE = "val_curve"          # [epoch, validation accuracy] per epoch: what early stopping and halving learn from
SCREENED = "screened"            # asked for and given up before it ran (a budget broken before training)
CHEAP = "cheap"                  # its metrics before training (screening, Pareto-aware early stopping)
WOULD_STOP = "would_stop"        # early stopping in shadow mode: the epoch it would have stopped at
MLFLOW_RUN_ID = "mlflow_run_id"  # its MLflow run
# the study's keys
TEACHER, TFIDF = "teacher", "tfidf"  # their metrics: what every ratio is to, and the text baseline
OBJECTIVES, CONSTRAINTS, CONFIG_DIGEST = "objectives", "constraints", "config_digest"  # what it was opened with
RECOMMENDED, RECOMMENDED_BECAUSE = "recommended", "recommended_because"
VALIDATION_SAMPLES, RUN_NAMES, MLFLOW_RUN_IDS = "validation_samples", "run_names", "mlflow_run_ids"
SEED = "seed"                    # the study's seed: trial n runs with this plus n


def metrics(trial: Any) -> dict[str, float]:
    """A trial's metrics (empty before it has any)."""
    return dict(trial.user_attrs.get(METRICS) or {})


def has_metrics(trial: Any) -> bool:
    return bool(trial.user_attrs.get(METRICS))


def fail_reason(trial: Any, default: str = "") -> str:
    return str(trial.user_attrs.get(FAIL_REASON, default))


def get(trial_or_study: Any, key: str, default: Any = None) -> Any:
    """Any other recorded value of a trial or a study by its key (one of the names above)."""
    return trial_or_study.user_attrs.get(key, default)


def write(trial_or_study: Any, **values: Any) -> None:
    """Record ``values`` (keys: the lower-case names above) on a trial or a study."""
    for key, value in values.items():
        if key not in KEYS:
            raise KeyError(f"{key!r} is not a key Squeezer records (one of {sorted(KEYS)})")
        trial_or_study.set_user_attr(key, value)


KEYS = {METRICS, FAIL_REASON, STOP_REASON, VAL_CURVE, SCREENED, CHEAP, WOULD_STOP, MLFLOW_RUN_ID, TEACHER, TFIDF,
        OBJECTIVES, CONSTRAINTS, CONFIG_DIGEST, RECOMMENDED, RECOMMENDED_BECAUSE, VALIDATION_SAMPLES, RUN_NAMES,
        MLFLOW_RUN_IDS, SEED, "test_accuracy", "test_perplexity"}


@dataclass(frozen=True)
class StudyRecord:
    """What a study has recorded, read once: the teacher's metrics, the TF-IDF baseline's, the objectives, the
    recommended member and why, the front's test figures by trial number, run names, validation samples."""

    teacher: dict[str, float] | None
    tfidf: dict[str, float] | None
    objectives: dict[str, str] | None
    recommended: int | None
    recommended_because: str
    tested: dict[int, float]          # the front's test metric (test_accuracy or test_perplexity), by trial
    run_names: dict[int, str]
    validation_samples: int | None

    @classmethod
    def of(cls, study: Any, test_metric: str | None = None) -> "StudyRecord":
        """``test_metric``: the key of the front's test figures (default: the teacher's quality's)."""
        attrs: Mapping[str, Any] = study.user_attrs
        teacher = attrs.get(TEACHER)
        metric = test_metric or quality_of(teacher or {}).test_metric
        return cls(teacher, attrs.get(TFIDF), attrs.get(OBJECTIVES), attrs.get(RECOMMENDED),
                   attrs.get(RECOMMENDED_BECAUSE, ""), {int(k): v for k, v in attrs.get(metric, {}).items()},
                   {int(k): v for k, v in attrs.get(RUN_NAMES, {}).items()}, attrs.get(VALIDATION_SAMPLES))


__all__ = ["KEYS", "StudyRecord", "fail_reason", "get", "has_metrics", "metrics", "write"]
