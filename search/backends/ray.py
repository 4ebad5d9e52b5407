"""The Ray Tune backend: the same trials, scheduled by Tune on a Ray cluster.

Tune's ``OptunaSearch`` samples the same space (define-by-run, conditional knobs included) with the configured
sampler into the same Optuna storage (Squeezer's sampler screens on the driver, before Tune starts each trial),
so the study record, the Pareto front and the resume rules are the Optuna backend's. The data and the teacher reach
the workers once, through Ray's object store (``tune.with_parameters``; memory-mapped data, and a language model's
cached top-k teacher outputs, as their files' paths when the cluster is this one machine). MLflow is written by the
driver only, from Tune's callbacks, so workers need no access to the tracking store. Classifiers and language models
run alike: a trial reports its validation quality at each evaluation (``EPOCH_METRIC``, higher is better:
``Quality.score``), which ASHA and successive halving read.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Mapping

import ray
import torch
from ray import cloudpickle, tune
from ray.tune.search.optuna import OptunaSearch

from squeezer.search.backends import cluster
from squeezer.search.backends.portable import Portable
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.config.run_settings import SearchSettings
from squeezer.search.config.objectives import METRICS, Quality
from squeezer.search.results.pareto import keep_metrics
from squeezer.search.trial.recipe import flatten, queue_repeats, replay_params, suggest_params
from squeezer.search.config.schedulers import SCHEDULERS
from squeezer.search.study.squeezer_sampler import SqueezerSampler
from squeezer.search.trial import records
from squeezer.search.trial.liveness import INTERRUPTED
from squeezer.search.study.halving import standing
from squeezer.search.study.session import Session
from squeezer.search.results.tracking import RunId
from squeezer.search.models import user
from squeezer.search.trial.benches import Bench
from squeezer.search.trial.run import Outcome, attempt

NUMBER = "squeezer.trial"     # the Optuna trial number, put into each Tune trial's config
SEED = "squeezer.seed"        # the study seed; a trial's seed is this plus its number, as in the Optuna backend
ERROR = "squeezer.error"      # a trial that ran and failed reports its reason under this key
CURVES = "squeezer.curves"    # per-epoch metrics, as JSON, in the final result
NODE = "squeezer.node"        # the Ray node that ran the trial
GPUS = "squeezer.gpus"        # the GPUs Tune gave it (their ids; empty: none)
DEVICE = "squeezer.device"    # where it trained
SECONDS = "squeezer.seconds"  # the trial's own run time on the worker
EPOCH_METRIC = "squeezer.val_score"  # what ASHA watches, evaluation by evaluation: Quality.score of the val quality
VALUE = "squeezer.val_quality"  # the validation quality itself (accuracy, perplexity) at that evaluation
STANDING = "squeezer.standing"  # halving: a trial's standing at its epoch, set by the driver's scheduler
CHEAP = "squeezer.cheap"      # halving: the trial's cheap metrics (JSON), with each epoch's report
SKIPPED = "squeezer.skipped"  # a restored trial the storage holds as finished: not run again

_session: Session | None = None  # the driver's session, for the callback (Tune pickles callbacks with its state)
#: trial numbers when ``run`` began: those finished (a restored one is skipped) and all (a restored one reopens its run)
_earlier: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())


def check(settings: SearchSettings) -> None:
    """Join the cluster and check that it can run the trials (``cluster.join``): what ``run_study`` asks before it
    writes anything."""
    cluster.join(settings)


def run(session: Session, target: int) -> None:
    """Run the study on Ray until ``target`` trials finished; a killed driver resumes from Tune's saved state."""
    global _session
    settings = session.config.search
    cluster.join(settings)  # connected already by ``run_study``; again here for callers that skip it
    _session = session
    # The storage's finished trials are final: a trial Tune restores although it finished (Tune saved its state
    # before the storage was told) is skipped, neither run nor recorded again.
    global _earlier
    trials = session.study.get_trials(deepcopy=False)
    done = frozenset(t.number for t in session.finished(trials))
    _earlier = (done, frozenset(t.number for t in trials))  # read once, not at every trial start
    trainable = tune.with_resources(tune.with_parameters(_trainable, bench=_sent(session.bench), done=done),
                                    {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial or 0})
    experiments = sorted(results_dir().glob(f"{session.name}.*"), key=lambda p: int(p.suffix[1:]))
    try:
        if experiments and tune.Tuner.can_restore(str(experiments[-1])):
            session.out(f"study {session.name!r}: resuming the Ray Tune experiment in {experiments[-1]}")
            tune.Tuner.restore(str(experiments[-1]), trainable=trainable, resume_unfinished=True).fit()
        count = len(experiments)
        while (remaining := target - len(session.finished())) > 0:
            # a new Tune experiment for what is left (a first run, a raised target, trials interrupted)
            session.out(f"study {session.name!r}: {target - remaining}/{target} trials done; running the rest on "
                        f"Ray ({cluster.describe(settings)}, {len(ray.nodes())} node(s))")
            count += 1
            _new_tuner(session, trainable, remaining, target, f"{session.name}.{count}").fit()
            if target - len(session.finished()) >= remaining:
                break  # no trial finished: nothing new would come of another round
    finally:
        _session = None
        cluster.leave()
    session.close_stale_trials()  # trials Tune asked for but never ran to an end


def results_dir() -> Path:
    """Where Tune keeps its experiments (``<study>.1``, ``<study>.2`` after a raised target, ...):
    ``$SQUEEZER_RAY_RESULTS`` or ./ray_results."""
    return Path(os.environ.get("SQUEEZER_RAY_RESULTS", "ray_results")).resolve()


def _sent(bench: Bench) -> Bench:
    """What the workers get: the classes of the user's own Python files by value (a worker cannot import such a file
    by its module name); on a cluster of one machine, memory-mapped data and cached teacher outputs as their files'
    paths (reopened by each worker, never copied); across machines, by value (the other nodes do not have this
    machine's cache)."""
    for module in user.file_modules():
        cloudpickle.register_pickle_by_value(module)
    if len([node for node in ray.nodes() if node.get("Alive")]) == 1:
        return bench.sent_by_path()
    return bench


def _new_tuner(session: Session, trainable: Any, samples: int, target: int, name: str) -> tune.Tuner:
    config, settings = session.config, session.config.search
    sampler = Portable(settings, session.seed)  # Tune pickles its searcher; some samplers cannot be pickled
    if isinstance(sampler.sampler, SqueezerSampler) and session.screen is not None:
        sampler.sampler.use(session.screen)  # screens on the driver, before Tune starts each trial
    searcher = _Searcher(
        config, sampler, space=_Space(config, session.seed), metric=list(config.objectives),
        mode=[d[:3] for d in config.objectives.values()], study_name=session.study.study_name,
        storage=session.storage)
    concurrent = settings.max_concurrent or cluster.at_once(ray.cluster_resources(), settings)
    make = SCHEDULERS[settings.scheduler].tune
    scheduler = make(EPOCH_METRIC) if make else None
    if settings.scheduler == "halving":
        scheduler = FrontHalving(config.objectives, session.bench.validation_count, settings.rung_epochs,
                                 settings.reduction_factor, config.kind.quality)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=samples,
                                    max_concurrent_trials=concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(results_dir()), callbacks=[_Mirror(target)],
                                  verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))


class FrontHalving(tune.schedulers.ASHAScheduler):
    """``search.scheduler: halving`` on Tune: Tune's ASHA keeps the rungs and promotions; it is fed each trial's
    standing on the front at its epoch (``study.halving.standing``), computed here on the driver, where every trial's
    per-epoch results arrive, against the other trials' results at the same epoch (a language model's: evaluation)."""

    def __init__(self, objectives: Mapping[str, str], samples: int, rung_epochs: int, reduction_factor: int,
                 quality: Quality) -> None:
        super().__init__(metric=STANDING, mode="max", grace_period=rung_epochs, reduction_factor=reduction_factor,
                         max_t=10**6)  # no cap: a trial ends with its pipeline (its last report is one past it)
        self.objectives, self.samples, self.quality = objectives, samples, quality
        self.points: dict[int, dict[str, tuple[float, dict[str, float]]]] = {}  # epoch -> trial -> its point

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if CHEAP in result and CURVES not in result:  # an epoch's report
            epoch, value, cheap = result["training_iteration"], result[VALUE], json.loads(result[CHEAP])
            here = self.points.setdefault(epoch, {})
            others = [point for trial_id, point in here.items() if trial_id != trial.trial_id]
            result = {**result, STANDING: standing(value, cheap, others, self.objectives, self.samples, self.quality)}
            here[trial.trial_id] = (value, cheap)
        return super().on_trial_result(tune_controller, trial, result)


class _Space:
    """Tune's define-by-run space: the joint space sampled by the shared walk; Tune captures values by name."""

    def __init__(self, config: ExperimentConfig, seed: int) -> None:
        self.config, self.seed = config, seed

    def __call__(self, trial: Any) -> dict[str, int]:
        suggest_params(trial, self.config)
        queue_repeats(trial, self.config)
        return {NUMBER: trial.number, SEED: self.seed}


class _Searcher(OptunaSearch):
    """OptunaSearch that also records what Squeezer's study keeps: metrics, budgets and failure reasons (through
    the study's storage, by trial number, before OptunaSearch tells the trial)."""

    def __init__(self, config: ExperimentConfig, sampler: Portable, **options: Any) -> None:
        super().__init__(sampler=sampler, **options)
        self.constraints, self.objectives = config.constraints, list(config.objectives)
        self.portable = sampler
        self.numbers: dict[str, int] = {}  # Tune trial id -> study trial number

    @property
    def screening(self) -> SqueezerSampler | None:
        """Squeezer's sampler, where it is the one configured."""
        built = self.portable.sampler
        return built if isinstance(built, SqueezerSampler) else None

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict) and NUMBER in config:
            number = self.numbers[trial_id] = int(config[NUMBER])
            trial = _active().trial(number) if self.screening and self.screening.screened(number) else None
            if trial is not None:
                records.write(trial, screened=True)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self.numbers.get(trial_id)
        if result and result.get(SKIPPED):
            return  # finished before: the storage keeps its outcome
        trial = None if number is None else _active().unfinished_trial(number)
        if trial is not None:
            if not result:  # no result at all: its worker died, or the driver stopped it
                records.write(trial, fail_reason=f"{INTERRUPTED}: the Ray trial ended without a result (its worker "
                              "or the driver stopped)")
            elif CURVES not in result:  # stopped early by the scheduler: PRUNED, as Optuna calls it
                result = None
            elif result.get(ERROR):
                records.write(trial, fail_reason=str(result[ERROR])[:2000])
                result, error = None, True
            elif all(k in result for k in self.objectives):
                keep_metrics(trial, _metrics(result), self.constraints)
        super().on_trial_complete(trial_id, result=result, error=error)


class _Mirror(tune.Callback):
    """Mirrors Tune's trials into MLflow from the driver: one nested run per trial, like the Optuna backend."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.runs: dict[str, RunId] = {}  # Tune trial id -> MLflow run id

    def __reduce__(self) -> tuple:  # Tune saves callbacks with its state; the session is the driver's
        return _Mirror, (self.target,)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        s, number = _active(), int(trial.config[NUMBER])
        done, earlier = _earlier
        if number in done:
            return  # restored by Tune, finished in the storage: skipped, and its run is there already
        params = flatten(replay_params(s.config, trial.config))
        # a trial Tune restores runs again under its number: the run its stopped attempt left is its run again
        reopened = s.tracker.reopen_trial_run(s.name, number) if number in earlier else None
        self.runs[trial.trial_id] = reopened or s.trial_run(number, params,
                                                            tags={"squeezer.tune_trial": trial.trial_id})

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if CURVES not in result or trial.trial_id not in self.runs:
            return  # a per-epoch report, for the scheduler; or a skipped trial
        s, run_id = _active(), self.runs[trial.trial_id]
        for tag in (NODE, GPUS, DEVICE):
            s.tracker.set_tag(run_id, tag, result[tag])
        curves = [(step, values) for step, values in json.loads(result[CURVES])]
        s.tracker.log_result(run_id, _metrics(result), curves, error=result.get(ERROR) or None)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        s, run_id = _active(), self.runs.pop(trial.trial_id, None)
        if run_id is None:
            return  # skipped: finished before this restore
        result = trial.last_result or {}
        params = flatten(replay_params(s.config, trial.config))
        number, position = int(trial.config[NUMBER]), f"{len(s.finished())}/{self.target}"
        if CURVES not in result:  # stopped early by the scheduler
            epochs = result.get("training_iteration", 0)
            outcome = Outcome(None, f"stopped early by the scheduler after {epochs} epoch(s)", stopped=True)
        else:
            failed = bool(result.get(ERROR))
            outcome = Outcome(None if failed else _metrics(result), str(result.get(ERROR)) if failed else None,
                              seconds=float(result.get(SECONDS, 0)))
            if trial.checkpoint is not None and not failed:
                s.tracker.log_result(run_id, None, model_dir=Path(trial.checkpoint.path))
        s.tracker.end(run_id, outcome.recorded_as[1], outcome.reason)  # the storage's state is OptunaSearch's
        s.progress(number, position, params, outcome)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        s, run_id = _active(), self.runs.pop(trial.trial_id, None)
        if run_id is not None:
            s.tracker.kill(run_id, f"{INTERRUPTED}: the Ray trial ended without a result (its worker or the driver "
                           f"stopped; {trial.error_file or 'no error file'})")


def _active() -> Session:
    if _session is None:
        raise RuntimeError("the Ray backend's callback ran outside a study")
    return _session


def _trainable(config: Mapping[str, Any], bench: Bench, done: frozenset[int] = frozenset()) -> None:
    """One trial on a Ray worker: the same ``attempt`` the Optuna backend runs, reported to Tune. A trial the
    storage holds as finished (``done``) is skipped."""
    number, scheduler = int(config[NUMBER]), bench.config.search.scheduler
    nan = float("nan")
    # Tune wants the search metrics, and the scheduler its own, in every result
    unknown = {**{k: nan for k in bench.config.objectives}, STANDING: 0.0, VALUE: nan}
    if number in done:
        tune.report({**unknown, SKIPPED: True})
        return
    cpus = max(1, int(tune.get_context().get_trial_resources().required_resources.get("CPU", 1)))
    torch.set_num_threads(bench.config.training.threads or cpus)  # the CPUs Tune gave the trial, unless told

    cheap: dict[str, str] = {}
    quality = bench.config.kind.quality

    def per_epoch(step: int, metrics: Mapping[str, float]) -> None:
        value = next((v for k, v in metrics.items() if k.endswith("." + quality.val_metric)), None)
        if value is not None:
            tune.report({**unknown, EPOCH_METRIC: quality.score(value), VALUE: value, **cheap})

    def watch(measured: Mapping[str, float]) -> Any:  # halving: the cheap metrics go with every epoch's report
        cheap[CHEAP] = json.dumps(dict(measured))
        return per_epoch

    with tempfile.TemporaryDirectory(prefix="squeezer-") as workdir:
        outcome = attempt(bench, replay_params(bench.config, config), int(config[SEED]) + number, Path(workdir),
                          report=per_epoch if scheduler == "asha" else lambda step, metrics: None,
                          watch=watch if scheduler == "halving" else None)
        value = (outcome.metrics or {}).get(quality.metric, nan)
        final = {**unknown, **(outcome.metrics or {}), EPOCH_METRIC: quality.score(value),
                 VALUE: value, ERROR: outcome.error or "",
                 CURVES: json.dumps(outcome.curves), SECONDS: outcome.seconds,
                 NODE: ray.get_runtime_context().get_node_id(), "squeezer.host": socket.gethostname(),
                 GPUS: ",".join(map(str, ray.get_gpu_ids())), DEVICE: str(bench.device)}
        checkpoint = tune.Checkpoint.from_directory(workdir) if outcome.metrics else None
        tune.report(final, checkpoint=checkpoint)


def _metrics(result: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(result[k]) for k in METRICS if k in result}
