"""``squeezer finish``: the member a user picked, trained to the end.

A study judges every recipe after a short budget (``lm_distill.steps``, ``distill.epochs``). Finishing one retrains its
recipe — the same student, the same pipeline, the same seed — with a longer budget: ``steps`` (epochs, for a
classifier) given, or, ``until_plateau``, up to a cap, stopping once the validation quality has not improved for
``patience`` evaluations and keeping the best evaluation's weights. The run is logged beside the study's trials in
MLflow (role ``finish``: its recipe, its curve as it goes, its deployed metrics and test quality, its model files) and
can be exported like a trial (``export_trial(..., role="finish")``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import optuna

from squeezer.compressors.progress import say
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.errors import ConfigError
from squeezer.search.results.tracking import ROLE_TAG, Tracker, resolve
from squeezer.search.study.halving import user_study
from squeezer.search.study.storage import open_storage
from squeezer.search.trial import baselines, records
from squeezer.search.trial import benches
from squeezer.search.trial.recipe import flatten, replay_params
from squeezer.search.trial.run import TrialFailed, attempt
from squeezer.search.trial.workbench import Given

PLATEAU_CAP = 10  # until_plateau without a budget: at most this many times the study's
MOST = 10**7      # a budget beyond this is a typo, not a plan


@dataclass(frozen=True)
class Finished:
    """What finishing a trial produced: its run, its metrics (the test quality among them), its training curve."""

    run_id: str
    metrics: dict[str, float]
    curve: list[tuple[int, dict[str, float]]]
    budget: int


def finish(config: ExperimentConfig, number: int, storage: str, tracking_uri: str, *, study_name: str | None = None,
           budget: int | None = None, until_plateau: bool = False, patience: int = 3,
           given: Given | None = None) -> Finished:
    """Retrain trial ``number`` of the study with ``budget`` (see the module's docstring) and log it; every input is
    checked before the data is read or anything trains."""
    name = study_name or config.name
    step, setting = config.kind.budget
    study = _study(name, storage, config)
    trial = _trial(study, number)
    params = replay_params(config, trial.params)
    if step not in params:
        raise ConfigError("--trial", f"trial {number}'s recipe has no {step} step: nothing of it trains", number)
    short = int(params[step][setting])
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MOST):
        raise ConfigError(f"--{setting}", f"must be an integer in [1, {MOST}]", budget)
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ConfigError("--patience", "must be an integer >= 1", patience)
    long = budget or (PLATEAU_CAP * short if until_plateau else None)
    if long is None:
        raise ConfigError(f"--{setting}", f"is needed (the study trained {short}), or --until-plateau", None)
    params = {**params, step: {**params[step], setting: long, "patience": patience if until_plateau else 0}}
    bench = benches.prepare(config, given)
    teacher = records.get(study, records.TEACHER)
    if teacher and "latency_raw_ms" in teacher:
        bench.time_against(teacher)  # timed against the teacher, as the study's trials were
    quality = config.kind.quality
    tracker = Tracker(tracking_uri, f"squeezer-{config.name}")
    try:
        parent = tracker.find_study_run(name)
        if parent is None:
            raise ConfigError("--tracking-uri", f"holds no run of study {name!r}: point it at the study's store",
                              tracking_uri)
        how = f"until {quality.val_metric} stops improving ({patience} evaluations), at most {long}" if until_plateau \
            else str(long)
        say(f"finishing trial {number} of study {name!r}: {step}.{setting} {short} -> {how}")
        run_id = tracker.trial_run(parent, name, number, flatten(params), tags={ROLE_TAG: "finish"},
                                   name=f"finish t{number:02d} ({setting} {long})")

        def report(at: int, metrics: Mapping[str, float]) -> None:  # the curve in MLflow as it goes
            tracker.log_metrics(run_id, metrics, step=at)
        with tempfile.TemporaryDirectory(prefix="squeezer-finish-") as workdir:
            try:
                outcome = attempt(bench, params, _seed(study, config, number), Path(workdir), report=report)
            except KeyboardInterrupt:  # Ctrl-C, SIGTERM: the run says it was stopped
                tracker.end(run_id, "KILLED", "interrupted: stopped while it trained")
                raise
            if outcome.metrics is None:
                tracker.log_result(run_id, None, error=outcome.error)
                tracker.end(run_id, "FAILED")
                raise TrialFailed(f"finishing trial {number} failed: {outcome.reason}")
            metrics = {**outcome.metrics, quality.test_metric: bench.test_quality(Path(workdir)),
                       f"{step}.{setting}_trained": float(_trained(outcome.curves, step, params[step], setting))}
            tracker.log_result(run_id, metrics, model_dir=Path(workdir))
        tracker.end(run_id, "FINISHED")
        tracker.flush()
        resolved = resolve(run_id)
    finally:
        tracker.close()
    return Finished(resolved, metrics, outcome.curves, long)


def _study(name: str, storage: str, config: ExperimentConfig) -> optuna.Study:
    study = user_study(open_storage(storage), name, storage)
    if records.get(study, records.CONFIG_DIGEST) not in (None, config.digest()):
        raise ConfigError("config", f"is not the one study {name!r} was run with: give the study's experiment file",
                          config.name)
    return study


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < len(study.trials):
        raise ConfigError("--trial", f"must be a trial number of study {study.study_name!r} (0 to "
                          f"{len(study.trials) - 1})", number)
    trial = study.trials[number]
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise ConfigError("--trial", f"trial {number} did not finish ({trial.state.name}): finish a finished one",
                          number)
    if baselines.is_baseline(trial):
        raise ConfigError("--trial", f"trial {number} is a baseline ({trial.params[baselines.PARAM]}): nothing of "
                          "it trains", number)
    return trial


def _seed(study: optuna.Study, config: ExperimentConfig, number: int) -> int:
    """The seed the trial ran with: the study's seed plus its number (every backend's rule; a study opened before
    its seed was recorded: the config's)."""
    return int(records.get(study, records.SEED, config.seed)) + number


def _trained(curves: list[tuple[int, dict[str, float]]], step: str, settings: Mapping[str, Any], setting: str) -> int:
    """How much of the budget trained (less where it stopped on a plateau): the evaluations ``step`` reported,
    each ``eval_every`` steps (a classifier's: an epoch)."""
    seen = [at for at, values in curves if any(k.startswith(f"{step}.val_") for k in values)]
    per = int(settings.get("eval_every", 1))
    return min(int(settings[setting]), (max(seen) + 1) * per) if seen else int(settings[setting])


__all__ = ["Finished", "finish"]
