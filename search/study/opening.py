"""Opening a study: create it or join it (a changed config is refused), its sampler, its one MLflow parent run, and
the earlier study a warm start begins from."""

from __future__ import annotations

import os
import time
import warnings
from typing import Any, Callable

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection

from squeezer.search.trial import baselines, records
from squeezer.search.results import review
from squeezer.search.study import samplers
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.config.rules import MAX_SEED
from squeezer.search.errors import ConfigError
from squeezer.search.results.pareto import pareto_trials
from squeezer.search.study.halving import user_studies
from squeezer.search.study.storage import exists, open_storage
from squeezer.search.results.tracking import Tracker

PARENT_WAIT_S = 60.0


def warm_start_params(config: ExperimentConfig, storage: str) -> list[dict[str, Any]]:
    """The parameters of the Pareto members of the study ``search.warm_start`` names (in the same storage), to be
    the new study's first trials; [] when none is named."""
    source = config.search.warm_start
    if source is None:
        return []
    names = user_studies(open_storage(storage)) if exists(storage) else []
    if source not in names:
        raise ConfigError("search.warm_start", f"no such study in {storage}; studies there: {names}", source)
    study = optuna.load_study(study_name=source, storage=open_storage(storage))
    front = pareto_trials(study, records.get(study, records.OBJECTIVES, config.objectives))
    return [dict(t.params) for t in front if not baselines.is_baseline(t)]  # the new study runs its own baselines


def open_study(config: ExperimentConfig, name: str, storage: BaseStorage, seed: int, wait: float = 0.0,
               where: str = "the storage") -> tuple[optuna.Study, bool]:
    """Create the study (returns ``created=True``), or load it by name to resume or join; a changed config is refused.

    Creating without ``load_if_exists`` is atomic in the storage, so of several processes started on one study
    exactly one is its creator.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = [StudyDirection[d.upper()] for d in config.objectives.values()]
    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=directions,
                                    sampler=make_sampler(config, seed))
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(config, seed))
        _check_same_config(study, config, name, where, wait, seed)
        # A resuming or joining process must not replay the creator's random draws (the same seed would sample
        # the same first points again): its sampler's seed also depends on the trials so far and the process.
        stream = np.random.SeedSequence([seed, len(study.trials), os.getpid()]).generate_state(1)[0]
        study.sampler = make_sampler(config, int(stream % MAX_SEED))
        return study, False
    _describe(study, config, seed)
    return study, True


def _describe(study: optuna.Study, config: ExperimentConfig, seed: int) -> None:
    with warnings.catch_warnings():  # experimental in Optuna, and the one way to name the objectives
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(config.objectives))  # optuna-dashboard and optuna.visualization name the axes
    records.write(study, objectives=config.objectives, constraints=[str(c) for c in config.constraints])
    records.write(study, seed=seed)  # trial n runs with seed + n (``squeezer finish`` runs it again so)
    records.write(study, config_digest=config.digest())  # last: joiners wait for it


def _check_same_config(study: optuna.Study, config: ExperimentConfig, name: str, storage: str, wait: float,
                       seed: int) -> None:
    digest = wait_for(lambda: records.get(study, records.CONFIG_DIGEST), wait)
    if digest is None:  # its creator died before describing it: this process does
        _describe(study, config, seed)
        return
    if digest != config.digest() or records.get(study, records.OBJECTIVES) != config.objectives:
        raise ConfigError("--study-name", f"study {name!r} in {storage} was run with a different config; "
                          "pick a new --study-name to start a fresh study")


def parent_run(tracker: Tracker, name: str, config: ExperimentConfig, created: bool, wait: float) -> str:
    """The study's one parent run: made by the study's creator, found (or, after a crash, made) by the others."""
    run_id = None if created else wait_for(lambda: tracker.find_study_run(name), wait)
    if run_id is None:
        run_id = tracker.create_study_run(name, config.raw)
    tracker.tag_experiment(review.view_tag(name), review.view_state(name, config.objectives))
    tracker.reopen(run_id)
    return run_id


def wait_for(get: Callable[[], Any], timeout: float) -> Any:
    """Poll ``get`` for up to ``timeout`` seconds until it returns something: another process may be creating it."""
    deadline = time.monotonic() + timeout
    while (value := get()) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return value


def make_sampler(config: ExperimentConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The configured Optuna sampler (``squeezer.search.study.samplers``)."""
    return samplers.make(config.search, seed)
