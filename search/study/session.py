"""A study's session: its record in the Optuna storage (the source of truth), its MLflow mirror, and its front.

Every backend runs trials through one ``Session``: it reconciles MLflow with the storage after a crash, records each
trial, and finishes with the front. ``squeezer.search.runner`` opens (or resumes) the study and starts the backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from squeezer.search.results import summary
from squeezer.search.trial import liveness
from squeezer.search.trial import records
from squeezer.search.results import scoring
from squeezer.search.results import report
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.study.early_stop import ParetoStop, headroom, val_curve
from squeezer.search.study.halving import Halving, rungs_study
from squeezer.search.errors import ConfigError
from squeezer.search.results.pareto import feasible, keep_metrics, members, pareto_trials
from squeezer.search.trial.recipe import flatten, replay_params
from squeezer.search.study.squeezer_sampler import Screen, SqueezerSampler
from squeezer.search.trial.liveness import STOPPED, finished, ran_and_failed
from squeezer.search.results.tracking import TRIAL_TAG, RunId, Tracker, created
from squeezer.search.config.objectives import quality_of
from squeezer.search.trial.benches import Bench
from squeezer.search.trial.run import CONFIG_FAULT, Outcome

Print = Callable[[str], None]
FIRST_FAILURES = 3  # trials that all failed for one configuration reason, none completed: the config is at fault


@dataclass
class Session:
    """One run of ``squeezer search`` over a (new, resumed or shared) study."""

    study: optuna.Study
    bench: Bench
    tracker: Tracker
    parent: str
    name: str
    seed: int
    out: Print
    storage: BaseStorage | None = None  # the study's storage, as opened (Ray's searcher writes to it too)
    teacher: dict[str, float] = field(default_factory=dict)
    tfidf: dict[str, float] | None = None  # a text study's TF-IDF baseline
    me: str = field(default_factory=liveness.me)
    screen: Screen | None = None
    rungs: optuna.Study | None = None  # successive halving's twin study (``study.halving``), opened when first needed

    @property
    def config(self) -> ExperimentConfig:
        return self.bench.config

    def begin(self) -> None:
        """Record the teacher's baseline and make MLflow agree with the storage about what a crash left open."""
        known = records.get(self.study, records.TEACHER)
        # measured once per study: a resumed study keeps its reference (hypervolume, ratios) and starts sooner
        self.teacher = known or self.bench.baseline()
        # every student is timed against the teacher from now on (``metrics.Reference``); a study begun before it
        # was timed so keeps its plain medians
        if "latency_raw_ms" in self.teacher:
            self.bench.time_against(self.teacher)
        if not known:
            records.write(self.study, teacher=self.teacher)  # `squeezer pareto` shows ratios to it
            self.tracker.log_metrics(self.parent, {f"teacher.{k}": v for k, v in self.teacher.items()})
            self.tracker.teacher_run(self.parent, self.name, self.teacher)
        tested = quality_of(self.teacher).test_metric
        self.out(f"teacher: {report.metrics_line(self.teacher)} {tested}={self.teacher[tested]:.4f}")
        self.tfidf = records.get(self.study, records.TFIDF) or self.record_tfidf()  # a text classifier's baseline
        if self.tfidf:
            self.out(f"TF-IDF baseline: {report.metrics_line(self.tfidf)} test_accuracy="
                     f"{self.tfidf['test_accuracy']:.4f}")
        if self.config.search.sampler == "squeezer":  # a resumed process draws other candidates than its first life
            self.screen = Screen(self.bench, self.teacher, self.seed + len(self.study.trials),
                                 self.config.search.candidates)
            if isinstance(self.study.sampler, SqueezerSampler):
                self.study.sampler.use(self.screen)
        fixed = self.reconcile()
        if fixed:
            self.out(f"reconciled {fixed} trial run(s) left open by a stopped process with the study storage")

    def record_tfidf(self) -> dict[str, float] | None:
        """A text study's TF-IDF + logistic-regression baseline (measured when the study was prepared), kept with
        the study (``squeezer pareto`` prints it) and on its parent run."""
        measured = self.bench.tfidf
        if measured:
            records.write(self.study, tfidf=measured)
            self.tracker.log_metrics(self.parent, {f"tfidf.{k}": v for k, v in measured.items()})
        return measured

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

    def unfinished_trial(self, number: int) -> optuna.Trial | None:
        """Trial ``number``, as ``trial`` gives it, unless the storage holds it as finished (read now)."""
        trial_id = self._trial_id(number)
        if trial_id is None or self.storage.get_trial(trial_id).state.is_finished():  # type: ignore[union-attr]
            return None
        return optuna.Trial(self.study, trial_id)

    def _trial_id(self, number: int) -> int | None:
        if self.storage is None:  # Optuna's Study has no public way to reach a trial by number
            return None
        study_id = self.storage.get_study_id_from_name(self.name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def fail(self, number: int, reason: str) -> None:
        """Tell trial ``number`` FAIL with its reason (a trial this process holds no ``optuna.Trial`` of)."""
        trial = self.trial(number)
        if trial is not None:
            records.write(trial, fail_reason=reason)
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
            if trial.number not in recorded and (trial.state == TrialState.COMPLETE or ran_and_failed(trial)):
                params = flatten(replay_params(self.config, trial.params))
                self._end_as_stored(self.trial_run(trial.number, params), trial)
                fixed += 1
        self.tracker.flush()
        return fixed

    def _end_as_stored(self, run_id: RunId, trial: FrozenTrial) -> bool:
        """End ``run_id`` with the stored outcome of ``trial``; False when the trial has none."""
        if trial.state == TrialState.COMPLETE:
            self.tracker.log_result(run_id, records.metrics(trial) or None)
            self.tracker.end(run_id, "FINISHED")
        elif ran_and_failed(trial):
            self.tracker.log_result(run_id, None, error=records.fail_reason(trial))
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

    def stop_rule(self) -> ParetoStop | Halving | None:
        """The rule that may stop a trial starting now, if one is configured: Pareto-aware early stopping
        (``study.early_stop``) or successive halving (``study.halving``)."""
        search = self.config.search
        if search.scheduler == "halving":
            if self.rungs is None:
                self.rungs = rungs_study(self.name, self.storage, search.rung_epochs, search.reduction_factor)
            return Halving(self.rungs, self.config.objectives, search.rung_epochs, search.reduction_factor,
                           self.bench.validation_count, self.config.kind.quality)
        if search.scheduler not in ("pareto", "shadow"):
            return None
        front = [(t.number, records.metrics(t)) for t in pareto_trials(self.study, self.config.objectives)]
        done = self.study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])
        gains = headroom([(records.get(t, records.VAL_CURVE), records.metrics(t)["accuracy"]) for t in done
                          if records.get(t, records.VAL_CURVE) is not None])
        return ParetoStop(self.config.objectives, front, gains, search.stop_allowance,
                          shadow=search.scheduler == "shadow")

    def record(self, trial: optuna.Trial, run_id: RunId, outcome: Outcome, position: str,
               rule: ParetoStop | Halving | None = None, **artifacts: Any) -> None:
        """Write the outcome to MLflow, tell the storage, then end the run (a crash between the two is reconciled).

        A trial stopped early is PRUNED in the storage and KILLED in MLflow, with the reason. From the trial's
        early-stopping ``rule``: the cheap metrics it judged (kept in the storage), and in shadow mode the reason it
        would have stopped the trial (kept on both)."""
        if (known := created(run_id)) is not None:
            records.write(trial, mlflow_run_id=known)  # optuna-dashboard shows it beside the trial
        if rule is not None and rule.cheap is not None:
            records.write(trial, cheap=dict(rule.cheap))
        if isinstance(rule, Halving):
            rule.end(outcome)
        if isinstance(rule, ParetoStop) and rule.would_stop and rule.shadow:
            records.write(trial, would_stop=rule.would_stop)
            self.tracker.set_tag(run_id, "squeezer.would_stop", rule.would_stop)
        self.tracker.log_result(run_id, outcome.metrics, outcome.curves, error=outcome.error, **artifacts)
        records.write(trial, val_curve=val_curve(outcome.curves))  # what early stopping learns from; its epochs
        state, status = outcome.recorded_as
        if state == TrialState.PRUNED:
            records.write(trial, stop_reason=outcome.reason)
            self.study.tell(trial, state=state)
        elif state == TrialState.FAIL:
            records.write(trial, fail_reason=(outcome.error or "")[:2000])
            self.study.tell(trial, state=state)
        else:
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
        done = feasible(self.study)  # read once: the front's size and its hypervolume
        front = members(done, self.config.objectives)
        hypervolume = self.log_hypervolume(done)
        self.tracker.tag_front(self.name, {t.number for t in front})  # the review shows the front as it stands
        self.out(f"{position} {report.metrics_line(outcome.metrics)} | pareto {len(front)} hv {hypervolume:.4f} | "
                 f"{outcome.seconds:.1f}s | {recipe}")

    def stop_if_misconfigured(self, reason: str) -> None:
        """A study whose first ``FIRST_FAILURES`` trials all failed for one configuration reason, with none completed,
        would fail every trial: it stops with that reason as bad input (``ConfigError``)."""
        if not reason.startswith(CONFIG_FAULT):
            return
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.COMPLETE for t in trials):
            return
        reasons = [records.fail_reason(t).splitlines()[0] for t in trials if ran_and_failed(t)]
        if len(reasons) >= FIRST_FAILURES and set(reasons) == {reason}:
            key, _, rule = reason.removeprefix(CONFIG_FAULT).partition(": ")
            raise ConfigError(key, f"{rule} (the first {len(reasons)} trials all failed so; the study stops)")

    def log_hypervolume(self, done: list[FrozenTrial] | None = None) -> float:
        """The hypervolume of every feasible run's plain front (``results.scoring``, ``plain``) on the parent run, at
        the count of completed trials: the history shows how fast the search improves, and never goes back.
        ``done``: the feasible trials, where just read."""
        done = feasible(self.study) if done is None else done
        value = scoring.hypervolume([records.metrics(t) for t in done], self.config.objectives, self.teacher,
                                    self.config.search.reference, plain=True)
        self.tracker.log_metrics(self.parent, {"pareto.hypervolume": value}, step=len(done))
        return value

    def finish(self) -> list[FrozenTrial]:
        """Record the front (``squeezer.search.results.summary``) and return it."""
        return summary.record(self)


__all__ = ["Print", "Session"]
