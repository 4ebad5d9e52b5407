"""The Optuna backend: ask, run and tell trials in this process.

Several processes given the same ``--study-name`` and one shared storage cooperate on one study: each asks for
trials until the study holds the target, counting the trials the others are running.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Mapping

import optuna
import torch

from squeezer.compressors.progress import Bar
from squeezer.search import hardware
from squeezer.search.trial import liveness
from squeezer.search.trial import records
from squeezer.search.trial.recipe import flatten, queue_repeats, suggest_params
from squeezer.search.study.squeezer_sampler import SqueezerSampler
from squeezer.search.trial.liveness import INTERRUPTED
from squeezer.search.study.session import Session
from squeezer.search.trial.run import attempt

POLL_S = 0.5


def run(session: Session, target: int) -> None:
    """Run trials until the study holds ``target`` finished ones (or ``search.timeout_s`` passes)."""
    settings = session.config
    torch.set_num_threads(hardware.threads(settings.training.threads, settings.search.jobs))
    session.out(f"training on {hardware.describe(session.bench.device, torch.get_num_threads())}")
    session.close_stale_trials()
    done = len(session.finished())
    session.out(f"study {session.name!r}: {done}/{target} trials done; objectives {session.config.objectives}")
    with Bar("study", total=target, unit="trials", initial=done, position=0) as bar:
        _run(session, target, bar)


def _run(session: Session, target: int, bar: Bar) -> None:
    started, timeout = time.monotonic(), session.config.search.timeout_s
    while True:
        trials = session.study.get_trials(deepcopy=False)  # one read of the storage per decision
        done = len(session.finished(trials))
        elsewhere = len(session.running_elsewhere(trials))
        bar.update(done - bar.count, note=f"{elsewhere} running in other processes" if elsewhere else "")
        if done >= target:
            return
        if timeout and time.monotonic() - started > timeout:
            session.out(f"timeout of {timeout}s reached")
            return
        if done + elsewhere >= target:
            time.sleep(POLL_S)  # the other processes' trials will reach the target, or fail and leave room
            continue
        trial = session.study.ask()
        if isinstance(session.study.sampler, SqueezerSampler) and session.study.sampler.screened(trial.number):
            records.write(trial, screened=True)
        liveness.claim(trial, session.me)
        rank = _rank(session, trial.number)
        if rank >= target:  # another process asked at the same moment and took the last place
            records.write(trial, fail_reason=f"{INTERRUPTED}: the target was reached by another process")
            session.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        one_trial(session, trial, f"{rank + 1}/{target}")


def one_trial(session: Session, trial: optuna.Trial, position: str) -> None:
    """Run one asked trial; a broken trial is recorded as failed and the study goes on."""
    params = suggest_params(trial, session.config)
    queue_repeats(trial, session.config)
    run_id = session.trial_run(trial.number, flatten(params))
    rule = session.stop_rule()
    with tempfile.TemporaryDirectory(prefix="squeezer-") as workdir, \
            Bar(f"trial {trial.number}", unit="epochs", position=1) as bar:
        try:
            with liveness.heartbeat(trial):
                outcome = attempt(session.bench, params, session.seed + trial.number, Path(workdir),
                                  report=lambda step, metrics: bar.update(1, note=epoch_note(step, metrics)),
                                  watch=rule.watch if rule else None)
        except KeyboardInterrupt:
            records.write(trial, fail_reason=f"{INTERRUPTED} by the user")
            session.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            session.tracker.kill(run_id, f"{INTERRUPTED} by the user")
            raise
        session.record(trial, run_id, outcome, position, rule, model_dir=Path(workdir))


def epoch_note(step: int, metrics: Mapping[str, float]) -> str:
    """``distill epoch 3 val_accuracy=0.9412``: where a trial is, from an epoch's report (a language model's
    distillation reports at evaluations: ``lm_distill evaluation 2 val_perplexity=41.20``)."""
    stage = next(iter(metrics), "train").split(".")[0]
    for quality in ("val_accuracy", "val_perplexity"):
        value = metrics.get(f"{stage}.{quality}")
        if value is not None:
            unit = "epoch" if quality == "val_accuracy" else "evaluation"
            return f"{stage} {unit} {step + 1} {quality}={value:.4f}"
    return f"{stage} epoch {step + 1}"


def _rank(session: Session, number: int) -> int:
    """How many trials before this one finished or are running: its place towards the target."""
    trials = session.study.get_trials(deepcopy=False)
    return sum(t.number < number for t in session.finished(trials) + session.running_elsewhere(trials))
