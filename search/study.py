"""The Optuna study: sample the joint space, run trials, record them in MLflow, finish with the Pareto front."""

from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna

from search import report
from search.config import ExperimentConfig
from search.errors import ConfigError
from search.pareto import pareto_mask
from search.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from search.tracking import Tracker
from search.trial import Workbench, baseline, flatten, prepare, run_trial
from spaces.optuna import suggest

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
    name, target = study_name or config.name, trials or config.search.trials
    seed = config.seed if seed is None else seed
    bench = prepare(config)  # every input error surfaces here, before a study or run exists
    study = open_study(config, name, storage, seed)
    tracker = Tracker(tracking_uri, f"squeezer-{config.name}")
    parent = tracker.study_run(name, config.raw)
    teacher = baseline(bench)
    tracker.log_metrics(parent, {f"teacher.{k}": v for k, v in teacher.items()})
    out(f"teacher: {report.metrics_line(teacher)} test_accuracy={teacher['test_accuracy']:.4f}")
    _close_interrupted(study, tracker, name, out)
    done = len(_finished(study))
    out(f"study {name!r}: {done}/{target} trials done; objectives {config.objectives}; storage {storage}")
    started = time.monotonic()
    try:
        while len(_finished(study)) < target:
            if config.search.timeout_s and time.monotonic() - started > config.search.timeout_s:
                out(f"timeout of {config.search.timeout_s}s reached")
                break
            _one_trial(study, bench, tracker, parent, name, seed, target, out)
    except KeyboardInterrupt:
        tracker.client.set_terminated(parent, status="KILLED")
        raise
    front = finish(study, tracker, parent, config, out, teacher)
    return StudyResult(study, front, parent)


def open_study(config: ExperimentConfig, name: str, storage: str, seed: int) -> optuna.Study:
    """Create the study, or load it by name to resume; a changed config is refused."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                directions=list(config.objectives.values()), sampler=make_sampler(config, seed))
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


def _one_trial(study: optuna.Study, bench: Workbench, tracker: Tracker, parent: str, name: str, seed: int,
               target: int, out: Print) -> None:
    config, trial, started = bench.config, study.ask(), time.monotonic()
    params = suggest_params(trial, config)
    run_id = tracker.trial_run(parent, name, trial.number, flatten(params))
    trial.set_user_attr("mlflow_run_id", run_id)
    position = f"[trial {len(_finished(study)) + 1}/{target}]"
    with tempfile.TemporaryDirectory(prefix="squeezer-") as workdir:
        model_file = Path(workdir) / "model.pt"
        try:
            metrics = run_trial(bench, params, seed + trial.number, Path(workdir),
                                report=lambda step, m: tracker.log_metrics(run_id, m, step))
        except KeyboardInterrupt:
            _fail(study, trial, tracker, run_id, f"{INTERRUPTED} by the user", status="KILLED")
            raise
        except Exception as err:  # a broken trial is recorded and the study goes on
            reason = f"{type(err).__name__}: {err}"
            _fail(study, trial, tracker, run_id, reason + "\n" + traceback.format_exc())
            out(f"{position} FAILED {reason} | {report.recipe(trial.params)}")
            return
        trial.set_user_attr("metrics", metrics)
        for constraint in config.constraints:
            trial.set_constraint(str(constraint), constraint.violation(metrics))
        study.tell(trial, [metrics[k] for k in config.objectives])
        tracker.end_trial(run_id, metrics, model_file=model_file)
    front = len(pareto_trials(study, config))
    out(f"{position} {report.metrics_line(metrics)} | pareto {front} | {time.monotonic() - started:.1f}s | "
        f"{report.recipe(trial.params)}")


def _fail(study: optuna.Study, trial: optuna.Trial, tracker: Tracker, run_id: str, reason: str,
          status: str = "FAILED") -> None:
    trial.set_user_attr("fail_reason", reason[:2000])
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    tracker.end_trial(run_id, None, error=reason, status=status)


def _close_interrupted(study: optuna.Study, tracker: Tracker, name: str, out: Print) -> None:
    stale = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING])
    for t in stale:  # their MLflow runs carry the reason
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    if tracker.close_interrupted(name) or stale:
        out(f"marked {len(stale)} interrupted trial(s) of the previous run as failed")


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that ran to an outcome: completed, or failed with a reason. Interrupted ones are run again."""
    trials = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL])
    return [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE or _ran_and_failed(t)]


def _ran_and_failed(trial: optuna.trial.FrozenTrial) -> bool:
    return not trial.user_attrs.get("fail_reason", INTERRUPTED).startswith(INTERRUPTED)


def pareto_trials(study: optuna.Study, config_objectives: ExperimentConfig | dict[str, str]
                  ) -> list[optuna.trial.FrozenTrial]:
    """The completed, feasible, non-dominated trials of ``study``."""
    objectives = getattr(config_objectives, "objectives", config_objectives)
    done = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    if not done:
        return []
    values = np.array([t.values for t in done])
    feasible = np.array([all(v <= 0 for v in t.constraints.values()) for t in done])
    mask = pareto_mask(values, list(objectives.values()), feasible)
    return [t for t, on in zip(done, mask, strict=True) if on]


def finish(study: optuna.Study, tracker: Tracker, parent: str, config: ExperimentConfig,
           out: Print, teacher: dict[str, float] | None = None) -> list[optuna.trial.FrozenTrial]:
    """Tag trial runs with their Pareto membership, attach the table and plot, print the table."""
    front = pareto_trials(study, config)
    members = {t.number for t in front}
    runs = {t.user_attrs["mlflow_run_id"]: t.number in members
            for t in study.get_trials(deepcopy=False) if "mlflow_run_id" in t.user_attrs}
    completed = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    figure = report.front_figure(completed, front, teacher)
    tracker.finish_study(parent, runs, report.front_csv(front), figure)
    report.close(figure)
    out(f"\nPareto front ({len(front)} of {len(completed)} completed trials):")
    out(report.front_table(front))
    if teacher:
        out(f"teacher (reference): {report.metrics_line(teacher)}")
    return front


__all__ = ["DEFAULT_STORAGE", "StudyResult", "finish", "make_sampler", "open_study", "pareto_trials", "run_study",
           "suggest_params"]
