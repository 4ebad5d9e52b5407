"""Running a study end to end: the checks before anything is written, the data and teacher prepared, the space
printed (and queued whole where it is finite and fits), the study opened or resumed, the backend (``search.backend``)
running its trials, and the front recorded. Used by ``squeezer search``, ``compress()`` and the worker processes of
``search.jobs``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from squeezer.compressors.progress import QUIET, Printer, printing, say, write
from squeezer.search import backends
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from squeezer.search.errors import ConfigError
from squeezer.search.locking import absolute, is_local, store_lock
from squeezer.search.results.tracking import Tracker
from squeezer.search.study import budgets, jobs
from squeezer.search.study.destinations import check_storage, check_tracking_uri
from squeezer.search.study.opening import PARENT_WAIT_S, open_study, parent_run, warm_start_params
from squeezer.search.study.session import Print, Session
from squeezer.search.study.storage import open_storage
from squeezer.search.trial import baselines
from squeezer.search.trial.recipe import REPEAT, every_recipe, recipe_count, space_lines
from squeezer.search.trial import benches
from squeezer.search.trial.workbench import Given


@dataclass
class StudyResult:
    study: optuna.Study
    front: list[FrozenTrial]
    parent_run_id: str
    experiment_id: str


def run_study(config: ExperimentConfig, *, trials: int | None = None, study_name: str | None = None,
              storage: str = DEFAULT_STORAGE, tracking_uri: str = DEFAULT_TRACKING_URI, seed: int | None = None,
              out: Print = write, given: Given | None = None, finish: bool = True, quiet: bool = False) -> StudyResult:
    """Run (or resume) the study until it holds ``trials`` finished trials, then record the Pareto front (unless
    ``finish`` is False: a worker of ``search.jobs``, whose study's process records it).

    The backend (``config.search.backend``) schedules the trials: ``optuna`` in this process (and its
    ``search.jobs - 1`` workers), ``ray`` on a Ray cluster. Every line it prints goes through one printer: its results
    to ``out``, what it is doing to standard error, with progress bars; ``quiet`` prints nothing at all.
    """
    printer = QUIET if quiet else Printer(out=out)
    with printing(printer):  # every line a logging record; the printer is their default handler
        return _run(config, trials, study_name, storage, tracking_uri, seed, say, given, finish)


def _run(config: ExperimentConfig, trials: int | None, study_name: str | None, storage: str, tracking_uri: str,
         seed: int | None, out: Print, given: Given | None, finish: bool) -> StudyResult:
    name, seed = study_name or config.name, config.seed if seed is None else seed
    storage, tracking_uri = absolute(storage), absolute(tracking_uri)
    check_storage(storage)  # within seconds, before anything is written
    check_tracking_uri(tracking_uri)
    backend = backends.load(config.search.backend)  # a missing extra is bad input too: nothing written yet
    if hasattr(backend, "check"):
        backend.check(config.search)  # the cluster: reachable, and a trial fits on a node
    if not is_local(storage):
        open_storage(storage)  # an unreachable database server is bad input too, found before any training
    warm = warm_start_params(config, storage)  # a missing earlier study is bad input too: nothing written yet
    given = given or Given()
    bench = benches.prepare(config, given)  # every input error surfaces here, before a study or run exists
    config = bench.config  # a TF-IDF baseline that knows more than the teacher adds a knob (``trial.tfidf``)
    budgets.check_reachable(bench)  # a budget no recipe can meet: refused before a study or run exists
    # A local store is opened by one process at a time, so what a killed creator left half done is finished
    # here at once; on a server storage, other processes poll for what the creator is still writing.
    wait = 0.0 if is_local(storage) else PARENT_WAIT_S
    queued = baselines.queue(config.kind) if baselines.wanted(config.student) else []
    asked = target = trials or config.search.trials
    for line in space_lines(config):
        out(line)
    grid = exhaustible(config, target - len(queued) - len(warm))
    if grid is not None:  # the whole space fits the budget: each recipe runs (repeats times), then the study stops
        target = len(queued) + len(warm) + len(grid)
    with store_lock(storage):
        store = open_storage(storage)
        study, created = open_study(config, name, store, seed, wait, where=storage)
        first = queued + [(p, None) for p in warm] + (grid or [])
        for params, attrs in first if created else []:  # the obvious baseline, an earlier study's front, the grid
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=REPEAT not in (attrs or {}))
        tracker = Tracker(tracking_uri, f"squeezer-{config.name}")
        parent = parent_run(tracker, name, config, created, wait)
    if created and queued:
        out(f"baselines: the teacher as trained, quantized without training "
            f"({', '.join(baselines.names(config.kind))}), "
            "is tried first")
    if warm and created:
        out(f"warm start: the {len(warm)} Pareto members of study {config.search.warm_start!r} are tried first")
    if grid is not None and target < asked:
        out(f"the space holds {len(grid) // config.search.repeats} recipe(s): each runs "
            f"{_times(config.search.repeats)}, {target} trial(s) in all, not the {asked} asked")
    session = Session(study, bench, tracker, parent, name, seed, out, storage=store)
    workers: list[Any] = []
    try:
        session.begin()
        if finish and config.search.backend == "optuna" and config.search.jobs > 1:
            # the teacher and its logits are cached by now (``prepare``): the workers load them
            workers = jobs.start(config.search.jobs - 1, name, run_study, {
                "config": config, "trials": asked, "study_name": name, "storage": storage,
                "tracking_uri": tracking_uri, "seed": seed, "given": given}, out)
        backend.run(session, target)
        jobs.wait(workers, name, out)
        if grid is not None and len(session.finished()) >= target:
            out(f"every recipe of the space has run ({len(grid)} trial(s)): nothing is left to search, so the study "
                "stops here")
        members = session.finish() if finish else []
    except KeyboardInterrupt:
        tracker.end(session.parent, "KILLED")
        raise
    except ConfigError:  # every trial failed for one configuration reason
        tracker.end(session.parent, "FAILED")
        raise
    finally:
        jobs.stop(workers)  # those still running: the study stopped early
        tracker.close()
    return StudyResult(study, members, session.parent, tracker.experiment_id)


def exhaustible(config: ExperimentConfig, budget: int) -> list[tuple[dict[str, Any], dict[str, int]]] | None:
    """A finite space whose every recipe (``search.repeats`` times) fits in ``budget`` trials: those trials, to be
    queued (the samplers would draw recipes again); otherwise None, and the sampler searches."""
    count, repeats = recipe_count(config), config.search.repeats
    if count is None or count * repeats > budget:
        return None
    return [(recipe, {REPEAT: i}) for recipe in every_recipe(config) for i in range(repeats)]


def _times(repeats: int) -> str:
    return "once" if repeats == 1 else f"{repeats} times (a seed each)"


__all__ = ["StudyResult", "exhaustible", "run_study"]
