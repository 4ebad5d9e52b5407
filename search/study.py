"""A study: its record in the Optuna storage (the source of truth), its MLflow mirror, and its Pareto front.

Every backend runs trials through one ``Session``: it opens (or resumes) the study, reconciles MLflow with the storage
after a crash, and finishes with the front. Backends only decide how trials are scheduled.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from squeezer.search import baselines, jobs, liveness, quality, report, review, samplers
from squeezer.search.config import MAX_SEED, ExperimentConfig
from squeezer.search.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from squeezer.search.destinations import check_storage, check_tracking_uri
from squeezer.search.early_stop import ParetoStop, headroom, val_curve
from squeezer.search.errors import ConfigError
from squeezer.search.locking import absolute, is_local, store_lock
from squeezer.search.pareto import feasible, keep_metrics, pareto_trials
from squeezer.search.recipe import flatten, replay_params
from squeezer.search.runtime import export
from squeezer.search.runtime.ort import OnnxModel
from squeezer.search.screening import Screen, SqueezerSampler
from squeezer.search.storage import exists, open_storage
from squeezer.search.tracking import TRIAL_TAG, RunId, Tracker, created
from squeezer.search.trial import CONFIG_FAULT, Given, Outcome, Workbench, baseline, prepare

Print = Callable[[str], None]
INTERRUPTED = "interrupted"
STOPPED = f"{INTERRUPTED}: the study process stopped"
PARENT_WAIT_S = 60.0
FIRST_FAILURES = 3  # trials that all failed for one configuration reason, none completed: the config is at fault


@dataclass
class StudyResult:
    study: optuna.Study
    front: list[FrozenTrial]
    parent_run_id: str
    experiment_id: str


def run_study(config: ExperimentConfig, *, trials: int | None = None, study_name: str | None = None,
              storage: str = DEFAULT_STORAGE, tracking_uri: str = DEFAULT_TRACKING_URI, seed: int | None = None,
              out: Print = print, given: Given | None = None, finish: bool = True) -> StudyResult:
    """Run (or resume) the study until it holds ``trials`` finished trials, then record the Pareto front (unless
    ``finish`` is False: a worker of ``search.jobs``, whose study's process records it).

    The backend (``config.search.backend``) schedules the trials: ``optuna`` in this process (and its
    ``search.jobs - 1`` workers), ``ray`` on a Ray cluster.
    """
    from squeezer.search import backends

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
    bench = prepare(config, given or Given())  # every input error surfaces here, before a study or run exists
    # A local store is opened by one process at a time, so what a killed creator left half done is finished
    # here at once; on a server storage, other processes poll for what the creator is still writing.
    wait = 0.0 if is_local(storage) else PARENT_WAIT_S
    queued = baselines.queue() if baselines.wanted(config.student) else []
    with store_lock(storage):
        store = open_storage(storage)
        study, created = open_study(config, name, store, seed, wait, where=storage)
        first = queued + [(p, None) for p in warm]
        for params, attrs in first if created else []:  # the obvious baseline, then an earlier study's front
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
        tracker = Tracker(tracking_uri, f"squeezer-{config.name}")
        parent = _parent_run(tracker, name, config, created, wait)
    if created and queued:
        out(f"baselines: the teacher as trained, quantized without training ({', '.join(baselines.BASELINES)}), "
            "is tried first")
    if warm and created:
        out(f"warm start: the {len(warm)} Pareto members of study {config.search.warm_start!r} are tried first")
    session = Session(study, bench, tracker, parent, name, seed, out, storage=store)
    workers: list[Any] = []
    try:
        session.begin()
        if finish and config.search.backend == "optuna" and config.search.jobs > 1:
            # the teacher and its logits are cached by now (``prepare``): the workers load them
            workers = jobs.start(config.search.jobs - 1, name, {
                "config": config, "trials": trials or config.search.trials, "study_name": name, "storage": storage,
                "tracking_uri": tracking_uri, "seed": seed, "given": given}, out)
        backend.run(session, trials or config.search.trials)
        jobs.wait(workers, name, out)
        front = session.finish() if finish else []
    except KeyboardInterrupt:
        tracker.end(session.parent, "KILLED")
        raise
    except ConfigError:  # every trial failed for one configuration reason
        tracker.end(session.parent, "FAILED")
        raise
    finally:
        jobs.stop(workers)  # those still running: the study stopped early
        tracker.close()
    return StudyResult(study, front, session.parent, tracker.experiment_id)


def warm_start_params(config: ExperimentConfig, storage: str) -> list[dict[str, Any]]:
    """The parameters of the Pareto members of the study ``search.warm_start`` names (in the same storage), to be
    the new study's first trials; [] when none is named."""
    source = config.search.warm_start
    if source is None:
        return []
    names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))] if exists(storage) else []
    if source not in names:
        raise ConfigError("search.warm_start", f"no such study in {storage}; studies there: {names}", source)
    study = optuna.load_study(study_name=source, storage=open_storage(storage))
    front = pareto_trials(study, study.user_attrs.get("objectives", config.objectives))
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
        _check_same_config(study, config, name, where, wait)
        # A resuming or joining process must not replay the creator's random draws (the same seed would sample
        # the same first points again): its sampler's seed also depends on the trials so far and the process.
        stream = np.random.SeedSequence([seed, len(study.trials), os.getpid()]).generate_state(1)[0]
        study.sampler = make_sampler(config, int(stream % MAX_SEED))
        return study, False
    _describe(study, config)
    return study, True


def _describe(study: optuna.Study, config: ExperimentConfig) -> None:
    with warnings.catch_warnings():  # experimental in Optuna, and the one way to name the objectives
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(config.objectives))  # optuna-dashboard and optuna.visualization name the axes
    study.set_user_attr("objectives", config.objectives)
    study.set_user_attr("constraints", [str(c) for c in config.constraints])
    study.set_user_attr("config_digest", config.digest())  # last: joiners wait for it


def _check_same_config(study: optuna.Study, config: ExperimentConfig, name: str, storage: str, wait: float) -> None:
    digest = _wait_for(lambda: study.user_attrs.get("config_digest"), wait)
    if digest is None:  # its creator died before describing it: this process does
        _describe(study, config)
        return
    if digest != config.digest() or study.user_attrs.get("objectives") != config.objectives:
        raise ConfigError("--study-name", f"study {name!r} in {storage} was run with a different config; "
                          "pick a new --study-name to start a fresh study")


def _parent_run(tracker: Tracker, name: str, config: ExperimentConfig, created: bool, wait: float) -> str:
    """The study's one parent run: made by the study's creator, found (or, after a crash, made) by the others."""
    run_id = None if created else _wait_for(lambda: tracker.find_study_run(name), wait)
    if run_id is None:
        run_id = tracker.create_study_run(name, config.raw)
    tracker.tag_experiment(review.view_tag(name), review.view_state(name, config.objectives))
    tracker.reopen(run_id)
    return run_id


def _wait_for(get: Callable[[], Any], timeout: float) -> Any:
    """Poll ``get`` for up to ``timeout`` seconds until it returns something: another process may be creating it."""
    deadline = time.monotonic() + timeout
    while (value := get()) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return value


def make_sampler(config: ExperimentConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The configured Optuna sampler (``squeezer.search.samplers``)."""
    return samplers.make(config.search, seed)


@dataclass
class Session:
    """One run of ``squeezer search`` over a (new, resumed or shared) study."""

    study: optuna.Study
    bench: Workbench
    tracker: Tracker
    parent: str
    name: str
    seed: int
    out: Print
    storage: BaseStorage | None = None  # the study's storage, as opened (Ray's searcher writes to it too)
    teacher: dict[str, float] = field(default_factory=dict)
    me: str = field(default_factory=liveness.me)
    screen: Screen | None = None

    @property
    def config(self) -> ExperimentConfig:
        return self.bench.config

    def begin(self) -> None:
        """Record the teacher's baseline and make MLflow agree with the storage about what a crash left open."""
        known = self.study.user_attrs.get("teacher")
        # measured once per study: a resumed study keeps its reference (hypervolume, ratios) and starts sooner
        self.teacher = known or baseline(self.bench)
        # every student is timed against the teacher from now on (``metrics.Reference``); a study begun before it
        # was timed so keeps its plain medians
        if "latency_raw_ms" in self.teacher:
            self.bench.timing = (self.teacher["latency_ms"], self.teacher["latency_batch_ms"])
        if not known:
            self.study.set_user_attr("teacher", self.teacher)  # `squeezer pareto` shows ratios to it
            self.tracker.log_metrics(self.parent, {f"teacher.{k}": v for k, v in self.teacher.items()})
            self.tracker.teacher_run(self.parent, self.name, self.teacher)
        self.out(f"teacher: {report.metrics_line(self.teacher)} test_accuracy={self.teacher['test_accuracy']:.4f}")
        if self.config.search.sampler == "squeezer":  # a resumed process draws other candidates than its first life
            self.screen = Screen(self.bench, self.teacher, self.seed + len(self.study.trials),
                                 self.config.search.candidates)
            if isinstance(self.study.sampler, SqueezerSampler):
                self.study.sampler.use(self.screen)
        fixed = self.reconcile()
        if fixed:
            self.out(f"reconciled {fixed} trial run(s) left open by a stopped process with the study storage")

    def finished(self, trials: list[FrozenTrial] | None = None) -> list[FrozenTrial]:
        return finished(self.study, trials)

    def running_elsewhere(self, trials: list[FrozenTrial] | None = None) -> list[FrozenTrial]:
        """Trials that another live process is running right now (from ``trials``, else read from the storage)."""
        trials = self.study.get_trials(deepcopy=False) if trials is None else trials
        return [t for t in trials if t.state == TrialState.RUNNING and not liveness.stale(t)]

    def close_stale_trials(self) -> int:
        """Fail the trials whose process died; they are run again as new trials."""
        stale = [t for t in self.study.get_trials(deepcopy=False, states=[TrialState.RUNNING]) if liveness.stale(t)]
        for t in stale:  # counted as interrupted, not as a trial that ran and failed
            self.fail(t.number, STOPPED)
        if stale:
            self.out(f"marked {len(stale)} interrupted trial(s) of a stopped process as failed")
        return len(stale)

    def trial(self, number: int) -> optuna.Trial | None:
        """Trial ``number`` of the study, to set its attributes (one another object asked: a stale trial, a Ray
        trial); None without the storage at hand."""
        trial_id = self._trial_id(number)
        return None if trial_id is None else optuna.Trial(self.study, trial_id)

    def is_finished(self, number: int) -> bool:
        """Whether the storage holds trial ``number`` as finished (read now)."""
        trial_id = self._trial_id(number)
        return trial_id is not None and self.storage.get_trial(trial_id).state.is_finished()  # type: ignore[union-attr]

    def _trial_id(self, number: int) -> int | None:
        if self.storage is None:  # Optuna's Study has no public way to reach a trial by number
            return None
        study_id = self.storage.get_study_id_from_name(self.name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def fail(self, number: int, reason: str) -> None:
        """Tell trial ``number`` FAIL with its reason (a trial this process holds no ``optuna.Trial`` of)."""
        trial = self.trial(number)
        if trial is not None:
            trial.set_user_attr("fail_reason", reason)
        self.study.tell(number, state=TrialState.FAIL)

    def reconcile(self) -> int:
        """Make MLflow say what the storage says after a crash: a trial run left RUNNING ends FINISHED or FAILED
        with the stored result, or KILLED if its trial did not finish; a finished trial whose run was never
        written gets one."""
        trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        runs = self.tracker.trial_runs(self.name)
        fixed = 0
        for run in (r for r in runs if r.info.status == "RUNNING"):
            trial = trials.get(int(run.data.tags[TRIAL_TAG]))
            if trial is not None and trial.state == TrialState.RUNNING and not liveness.stale(trial):
                continue  # another live process is running it
            fixed += 1
            if trial is None or not self._end_as_stored(run.info.run_id, trial):
                self.tracker.kill(run.info.run_id, STOPPED)
        recorded = {int(r.data.tags[TRIAL_TAG]) for r in runs}
        for trial in trials.values():
            if trial.number not in recorded and (trial.state == TrialState.COMPLETE or _ran_and_failed(trial)):
                params = flatten(replay_params(self.config, trial.params))
                self._end_as_stored(self.trial_run(trial.number, params), trial)
                fixed += 1
        self.tracker.flush()
        return fixed

    def _end_as_stored(self, run_id: RunId, trial: FrozenTrial) -> bool:
        """End ``run_id`` with the stored outcome of ``trial``; False when the trial has none."""
        if trial.state == TrialState.COMPLETE:
            self.tracker.log_result(run_id, trial.user_attrs.get("metrics"))
            self.tracker.end(run_id, "FINISHED")
        elif _ran_and_failed(trial):
            self.tracker.log_result(run_id, None, error=trial.user_attrs["fail_reason"])
            self.tracker.end(run_id, "FAILED")
        else:
            return False
        return True

    def run_name(self, trial: FrozenTrial) -> str:
        """The name of ``trial``'s run, from its whole recipe (fixed settings included)."""
        try:
            params = flatten(replay_params(self.config, trial.params))
        except KeyError:  # a trial told without its recipe (by hand, through Optuna)
            params = trial.params
        return report.run_name(trial.number, params)

    def trial_run(self, number: int, params: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> RunId:
        """The trial's MLflow run, named by its number and recipe (``t07 cnn d2c8 · T3.1 α0.7 · prune 30 % · int8``)."""
        name = report.run_name(number, params)
        return self.tracker.trial_run(self.parent, self.name, number, params, tags, name=name)

    def stop_rule(self) -> ParetoStop | None:
        """Pareto-aware early stopping for a trial starting now (``squeezer.search.early_stop``), if configured."""
        search = self.config.search
        if search.scheduler not in ("pareto", "shadow"):
            return None
        front = [(t.number, t.user_attrs["metrics"]) for t in pareto_trials(self.study, self.config.objectives)]
        done = self.study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])
        gains = headroom([(t.user_attrs["val_curve"], t.user_attrs["metrics"]["accuracy"]) for t in done
                          if "val_curve" in t.user_attrs])
        return ParetoStop(self.config.objectives, front, gains, search.stop_allowance,
                          shadow=search.scheduler == "shadow")

    def record(self, trial: optuna.Trial, run_id: RunId, outcome: Outcome, position: str,
               rule: ParetoStop | None = None, **artifacts: Any) -> None:
        """Write the outcome to MLflow, tell the storage, then end the run (a crash between the two is reconciled).

        A trial stopped early is PRUNED in the storage and KILLED in MLflow, with the reason. From the trial's
        early-stopping ``rule``: the cheap metrics it judged (kept in the storage), and in shadow mode the reason it
        would have stopped the trial (kept on both)."""
        if (known := created(run_id)) is not None:
            trial.set_user_attr("mlflow_run_id", known)  # optuna-dashboard shows it beside the trial
        if rule is not None and rule.cheap is not None:
            trial.set_user_attr("cheap", dict(rule.cheap))
        if rule is not None and rule.would_stop and rule.shadow:
            trial.set_user_attr("would_stop", rule.would_stop)
            self.tracker.set_tag(run_id, "squeezer.would_stop", rule.would_stop)
        self.tracker.log_result(run_id, outcome.metrics, outcome.curves, error=outcome.error, **artifacts)
        state, status = outcome.recorded_as
        if state == TrialState.PRUNED:
            trial.set_user_attr("stop_reason", outcome.reason)
            self.study.tell(trial, state=state)
        elif state == TrialState.FAIL:
            trial.set_user_attr("fail_reason", (outcome.error or "")[:2000])
            self.study.tell(trial, state=state)
        else:
            trial.set_user_attr("val_curve", val_curve(outcome.curves))  # what early stopping learns from
            self.tell(trial, outcome.metrics)
        self.tracker.end(run_id, status, outcome.reason)
        self.progress(trial.number, position, trial.params, outcome)

    def tell(self, trial: optuna.Trial, metrics: Mapping[str, float]) -> None:
        keep_metrics(trial, metrics, self.config.constraints)
        self.study.tell(trial, [metrics[k] for k in self.config.objectives])

    def progress(self, number: int, position: str, params: Mapping[str, Any], outcome: Outcome) -> None:
        """One line per finished trial: ``[trial 7 · 8/30]`` (its number, as everywhere; then how far the study is)."""
        recipe = report.recipe(params)
        position = f"[trial {number} · {position}]"
        if outcome.metrics is None:
            self.out(f"{position} {'' if outcome.stopped else 'FAILED '}{outcome.reason} | {recipe}")
            if not outcome.stopped:
                self.stop_if_misconfigured(outcome.reason)
            return
        front = len(pareto_trials(self.study, self.config.objectives))
        hypervolume = self.log_hypervolume()
        self.out(f"{position} {report.metrics_line(outcome.metrics)} | pareto {front} hv {hypervolume:.4f} | "
                 f"{outcome.seconds:.1f}s | {recipe}")

    def stop_if_misconfigured(self, reason: str) -> None:
        """A study whose first ``FIRST_FAILURES`` trials all failed for one configuration reason, with none completed,
        would fail every trial: it stops with that reason as bad input (``ConfigError``)."""
        if not reason.startswith(CONFIG_FAULT):
            return
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.COMPLETE for t in trials):
            return
        reasons = [t.user_attrs["fail_reason"].splitlines()[0] for t in trials if _ran_and_failed(t)]
        if len(reasons) >= FIRST_FAILURES and set(reasons) == {reason}:
            key, _, rule = reason.removeprefix(CONFIG_FAULT).partition(": ")
            raise ConfigError(key, f"{rule} (the first {len(reasons)} trials all failed so; the study stops)")

    def log_hypervolume(self) -> float:
        """The front's hypervolume (``squeezer.search.quality``) on the parent run, at the count of completed trials:
        the history shows how fast the search improves."""
        done = feasible(self.study)
        value = quality.hypervolume([t.user_attrs["metrics"] for t in done], self.config.objectives, self.teacher,
                                    self.config.search.reference)
        self.tracker.log_metrics(self.parent, {"pareto.hypervolume": value}, step=len(done))
        return value

    def finish(self) -> list[FrozenTrial]:
        """Re-evaluate the front on the test split, recommend a member (``quality.recommend``), tag trial runs with
        their Pareto membership, attach the table and plot, print the table and counts."""
        front = pareto_trials(self.study, self.config.objectives)
        runs = self.tracker.finished_runs(self.name)  # read once: the test split's re-evaluation, the model, links
        tested = self.test_front(front, runs)
        samples = len(self.bench.splits.val_y)
        chosen, why = quality.recommend([t.user_attrs["metrics"] for t in front], self.config.objectives,
                                        self.teacher, samples, self.config.search.min_accuracy_share)
        recommended = None if chosen is None else front[chosen].number
        trials = self.study.get_trials(deepcopy=False)
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        every_name = {t.number: self.run_name(t) for t in completed}
        names = {t.number: every_name[t.number] for t in front}
        # per study, keyed by trial number: Optuna keeps a finished trial's attributes as they were when it ended
        for key, value in (("recommended", recommended), ("recommended_because", why),
                           ("validation_samples", samples), ("run_names", {str(k): v for k, v in names.items()}),
                           ("mlflow_run_ids", {str(k): v for k, v in runs.items()})):
            self.study.set_user_attr(key, value)  # what `squeezer pareto` prints again
        if recommended is not None:
            self.log_recommended(recommended, runs.get(recommended))
        failed = [t for t in trials if t.state == TrialState.FAIL and _ran_and_failed(t)]
        interrupted = [t for t in trials if t.state == TrialState.FAIL and not _ran_and_failed(t)]
        stopped = [t for t in trials if t.state == TrialState.PRUNED]
        ended = sorted(feasible(self.study), key=lambda t: t.number)
        figures = {"pareto.png": report.front_figure(completed, front, self.teacher, recommended),
                   "hypervolume.png": report.hypervolume_figure(quality.history(
                       [t.user_attrs["metrics"] for t in ended], self.config.objectives, self.teacher,
                       self.config.search.reference))}
        summary = {"trials.completed": len(completed), "trials.failed": len(failed),
                   "trials.interrupted": len(interrupted), "trials.stopped_early": len(stopped),
                   "pareto.size": len(front)}
        self.log_hypervolume()  # at its step, like every trial's: a step-0 summary point would break its history
        page = report.front_html(completed, front, every_name, self.teacher, recommended)
        records = report.front_records(front, self.teacher, tested, recommended, names, samples)
        links = {number: self.tracker.run_link(run_id) for number, run_id in runs.items()}
        description = (f"**Pareto front of study {self.name}** ({len(front)} of {len(completed)} completed trials; "
                       f"± the standard error of the validation accuracy on {samples} samples)\n\n"
                       f"{report.front_markdown(records, self.teacher, links)}\n\n"
                       f"**Recommended**: {why or 'none'}")
        self.tracker.finish_study(self.parent, self.name, {t.number for t in front},
                                  report.front_csv(front, self.teacher, tested), figures, summary, recommended, page,
                                  description)
        for figure in figures.values():
            report.close(figure)
        early = f", {len(stopped)} stopped early" if stopped else ""
        early += f", {len(interrupted)} interrupted (run again)" if interrupted else ""
        self.out(f"\nPareto front ({len(front)} of {len(completed)} completed trials; {len(failed)} failed{early}):")
        self.out(report.front_table(front, self.teacher, tested, recommended, names, why, samples))
        return front

    def log_recommended(self, number: int, run: str | None) -> None:
        """The recommended trial's deployed ONNX file as an MLflow model of its ``run``, named by the study's run:
        its recipe as params, three raw validation samples as its input example."""
        with tempfile.TemporaryDirectory(prefix="squeezer-model-") as tmp:
            folder = self.tracker.artifacts(run, Path(tmp))
            if folder is None or not (folder / "model.onnx").is_file():
                return
            example = self.bench.splits.val_raw[:3]
            outputs = {"logits": OnnxModel(folder / "model.onnx").predict(example).numpy()}
            params = flatten(replay_params(self.config, self.study.trials[number].params))
            self.tracker.log_onnx_model(self.parent, run, folder / "model.onnx", "recommended_model",
                                        example.numpy(), outputs, params,
                                        {"squeezer.study": self.name, "squeezer.trial": number})

    def test_front(self, front: list[FrozenTrial], runs: Mapping[int, str]) -> dict[int, float]:
        """Each Pareto member's accuracy on the test split (never seen by the search), from its deployed artifact in
        its MLflow run (``runs``, by trial number); logged there as ``test_accuracy`` and kept in the study for
        ``squeezer pareto``."""
        tested = {int(k): v for k, v in self.study.user_attrs.get("test_accuracy", {}).items()}
        s = self.bench.splits
        with tempfile.TemporaryDirectory(prefix="squeezer-test-") as tmp:
            for trial in front:
                if trial.number in tested:
                    continue
                run_id = runs.get(trial.number)
                folder = self.tracker.artifacts(run_id, Path(tmp) / str(trial.number))
                if run_id is None or folder is None:  # a run rebuilt after a crash has no artifacts
                    continue
                deployed = export.reload(folder, self.config.measure.runtime, s, template=self.bench.teacher)
                predicted = deployed.predict(s.test_raw).argmax(1)  # the user's raw input, as deployed
                tested[trial.number] = (predicted == s.test_y).float().mean().item()
                self.tracker.log_metrics(run_id, {"test_accuracy": tested[trial.number]})
        self.study.set_user_attr("test_accuracy", {str(k): v for k, v in tested.items()})
        return tested


def finished(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """Trials that ran to an outcome: completed, stopped early (pruned), or failed with a reason.
    Interrupted ones are run again. ``trials``: a snapshot already read from ``study``."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or _ran_and_failed(t)]


def _ran_and_failed(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and not trial.user_attrs.get("fail_reason", INTERRUPTED).startswith(
        INTERRUPTED)


__all__ = ["DEFAULT_STORAGE", "Session", "StudyResult", "finished", "make_sampler", "open_study", "run_study"]
