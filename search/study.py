"""The Optuna study: sample the joint space, run trials, record them in MLflow, finish with the Pareto front."""

from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import optuna
from optuna.study import StudyDirection

from squeezer.search import report
from squeezer.search.config import ExperimentConfig
from squeezer.search.errors import ConfigError
from squeezer.search.pareto import pareto_mask
from squeezer.search.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from squeezer.search.tracking import Tracker
from squeezer.search.trial import Workbench, baseline, flatten, prepare, run_trial
from squeezer.spaces.optuna import suggest

Print = Callable[[str], None]
INTERRUPTED = "interrupted"


@dataclass
class StudyResult:
    study: optuna.Study
    front: list[optuna.trial.FrozenTrial]
    parent_run_id: str


def run_study(config: ExperimentConfig, *, trials: int | None = None, study_name: str | None = None,
              storage: str = DEFAULT_STORAGE, tracking_uri: str = DEFAULT_TRACKING_URI, seed: int | None = None,
              out: Print = print) -> StudyResult:
    """Run (or resume) the study until it holds ``trials`` finished trials, then record the Pareto front."""
    name, seed = study_name or config.name, config.seed if seed is None else seed
    bench = prepare(config)  # every input error surfaces here, before a study or run exists
    study = open_study(config, name, storage, seed)
    tracker = Tracker(tracking_uri, f"squeezer-{config.name}")
    session = _Session(study, bench, tracker, tracker.study_run(name, config.raw), name, seed, out)
    session.start(trials or config.search.trials)
    return StudyResult(study, session.finish(), session.parent)


def open_study(config: ExperimentConfig, name: str, storage: str, seed: int) -> optuna.Study:
    """Create the study, or load it by name to resume; a changed config is refused."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                directions=[StudyDirection[d.upper()] for d in config.objectives.values()],
                                sampler=make_sampler(config, seed))
    digest = study.user_attrs.get("config_digest")
    if digest is None:
        study.set_user_attr("config_digest", config.digest())
        study.set_user_attr("objectives", config.objectives)
        study.set_user_attr("constraints", [str(c) for c in config.constraints])
    elif digest != config.digest() or study.user_attrs.get("objectives") != config.objectives:
        raise ConfigError("--study-name", f"study {name!r} in {storage} was run with a different config; "
                          "pick a new --study-name to start a fresh study")
    return study


def make_sampler(config: ExperimentConfig, seed: int) -> optuna.samplers.BaseSampler:
    """NSGA-II by default; TPE or random on request. Budgets reach them through each trial's constraints."""
    if config.search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if config.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.NSGAIISampler(population_size=config.search.population_size, seed=seed)


def suggest_params(trial: optuna.trial.BaseTrial, config: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """Sample the joint space: the student's architecture and every pipeline step's settings."""
    params = {"student": suggest(trial, config.student, "student.")}
    params.update({step.name: suggest(trial, step.space, f"{step.name}.") for step in config.pipeline})
    return params


@dataclass
class _Session:
    """One run of ``squeezer search`` over a (new or resumed) study."""

    study: optuna.Study
    bench: Workbench
    tracker: Tracker
    parent: str
    name: str
    seed: int
    out: Print
    teacher: dict[str, float] = field(default_factory=dict)

    @property
    def config(self) -> ExperimentConfig:
        return self.bench.config

    def start(self, target: int) -> None:
        """Record the teacher's baseline, close what a killed run left open, then run trials up to ``target``."""
        self.teacher = baseline(self.bench)
        self.tracker.log_metrics(self.parent, {f"teacher.{k}": v for k, v in self.teacher.items()})
        self.out(f"teacher: {report.metrics_line(self.teacher)} test_accuracy={self.teacher['test_accuracy']:.4f}")
        self._close_interrupted()
        self.out(f"study {self.name!r}: {len(_finished(self.study))}/{target} trials done; "
                 f"objectives {self.config.objectives}")
        started, timeout = time.monotonic(), self.config.search.timeout_s
        try:
            while len(_finished(self.study)) < target:
                if timeout and time.monotonic() - started > timeout:
                    self.out(f"timeout of {timeout}s reached")
                    break
                self.one_trial(f"[trial {len(_finished(self.study)) + 1}/{target}]")
        except KeyboardInterrupt:
            self.tracker.client.set_terminated(self.parent, status="KILLED")
            raise

    def one_trial(self, position: str) -> None:
        """Ask, run and tell one trial; a broken trial is recorded as failed and the study goes on."""
        trial, started = self.study.ask(), time.monotonic()
        params = suggest_params(trial, self.config)
        run_id = self.tracker.trial_run(self.parent, self.name, trial.number, flatten(params))
        trial.set_user_attr("mlflow_run_id", run_id)
        with tempfile.TemporaryDirectory(prefix="squeezer-") as workdir:
            try:
                metrics = run_trial(self.bench, params, self.seed + trial.number, Path(workdir),
                                    report=lambda step, m: self.tracker.log_metrics(run_id, m, step))
            except KeyboardInterrupt:
                self._fail(trial, run_id, f"{INTERRUPTED} by the user", status="KILLED")
                raise
            except Exception as err:
                reason = f"{type(err).__name__}: {err}"
                self._fail(trial, run_id, reason + "\n" + traceback.format_exc())
                self.out(f"{position} FAILED {reason} | {report.recipe(trial.params)}")
                return
            self._tell(trial, metrics)
            self.tracker.end_trial(run_id, metrics, model_file=Path(workdir) / "model.pt")
        front = len(pareto_trials(self.study, self.config.objectives))
        self.out(f"{position} {report.metrics_line(metrics)} | pareto {front} | {time.monotonic() - started:.1f}s"
                 f" | {report.recipe(trial.params)}")

    def finish(self) -> list[optuna.trial.FrozenTrial]:
        """Tag trial runs with their Pareto membership, attach the table and plot, print the table."""
        front = pareto_trials(self.study, self.config.objectives)
        members = {t.number for t in front}
        trials = self.study.get_trials(deepcopy=False)
        runs = {t.user_attrs["mlflow_run_id"]: t.number in members for t in trials if "mlflow_run_id" in t.user_attrs}
        completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        figure = report.front_figure(completed, front, self.teacher)
        self.tracker.finish_study(self.parent, runs, report.front_csv(front), figure)
        report.close(figure)
        self.out(f"\nPareto front ({len(front)} of {len(completed)} completed trials):")
        self.out(report.front_table(front))
        self.out(f"teacher (reference): {report.metrics_line(self.teacher)}")
        return front

    def _tell(self, trial: optuna.Trial, metrics: dict[str, float]) -> None:
        trial.set_user_attr("metrics", metrics)
        for constraint in self.config.constraints:
            trial.set_constraint(str(constraint), constraint.violation(metrics))
        self.study.tell(trial, [metrics[k] for k in self.config.objectives])

    def _fail(self, trial: optuna.Trial, run_id: str, reason: str, status: str = "FAILED") -> None:
        trial.set_user_attr("fail_reason", reason[:2000])
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.tracker.end_trial(run_id, None, error=reason, status=status)

    def _close_interrupted(self) -> None:
        stale = self.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING])
        for t in stale:  # their MLflow runs carry the reason
            self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if self.tracker.close_interrupted(self.name) or stale:
            self.out(f"marked {len(stale)} interrupted trial(s) of the previous run as failed")


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that ran to an outcome: completed, or failed with a reason. Interrupted ones are run again."""
    trials = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL])
    return [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE or _ran_and_failed(t)]


def _ran_and_failed(trial: optuna.trial.FrozenTrial) -> bool:
    return not trial.user_attrs.get("fail_reason", INTERRUPTED).startswith(INTERRUPTED)


def pareto_trials(study: optuna.Study, objectives: Mapping[str, str]) -> list[optuna.trial.FrozenTrial]:
    """The completed, feasible, non-dominated trials of ``study`` under ``objectives`` (name -> direction)."""
    done = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    if not done:
        return []
    values = np.array([t.values for t in done])
    feasible = np.array([all(v <= 0 for v in t.constraints.values()) for t in done])
    mask = pareto_mask(values, list(objectives.values()), feasible)
    return [t for t, on in zip(done, mask, strict=True) if on]


__all__ = ["DEFAULT_STORAGE", "StudyResult", "make_sampler", "open_study", "pareto_trials", "run_study",
           "suggest_params"]
