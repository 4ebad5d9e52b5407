"""Whether a RUNNING trial is still running: its owner (``host:pid``) and a heartbeat in the study storage, which
every process sharing the study can read. On the owner's host its pid tells at once; another host's trial is stale
once its heartbeat has been silent for ``SILENCE_S``. (Optuna keeps its own heartbeat beside its storages, too.)"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from squeezer.search.trial import records

INTERRUPTED = "interrupted"  # how a trial's reason starts when it did not run to an outcome (it is run again)
STOPPED = f"{INTERRUPTED}: the study process stopped"
OWNER = "owner"  # user attribute: "host:pid" of the process running the trial
HEARTBEAT = "heartbeat"  # user attribute: when the owner last said the trial is still running (epoch seconds)
HEARTBEAT_S, SILENCE_S = 30.0, 120.0  # another machine's trial that has been silent this long is stale


def me() -> str:
    """This process, as an owner: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(trial: optuna.Trial, owner: str) -> None:
    trial.set_user_attr(OWNER, owner)
    trial.set_user_attr(HEARTBEAT, time.time())


@contextmanager
def heartbeat(trial: optuna.Trial) -> Iterator[None]:
    """While the trial runs, say so every ``HEARTBEAT_S``: other machines cannot see whether we are alive."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            trial.set_user_attr(HEARTBEAT, time.time())

    thread = threading.Thread(target=beat, name="squeezer-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def stale(trial: FrozenTrial) -> bool:
    """Whether a RUNNING trial's process is gone."""
    host, _, pid = str(trial.user_attrs.get(OWNER, "")).rpartition(":")
    if not host:
        return True  # never claimed: its process died between ask and claim (or Tune asked for it)
    if host != socket.gethostname():
        return time.time() - float(trial.user_attrs.get(HEARTBEAT, 0)) > SILENCE_S
    return int(pid) == os.getpid() or not _alive(int(pid))  # our own pid before we ran anything: a past life


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def finished(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """Trials that ran to an outcome: completed, stopped early (pruned), or failed with a reason.
    Interrupted ones are run again. ``trials``: a snapshot already read from ``study``."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or ran_and_failed(t)]


def ran_and_failed(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and not records.fail_reason(trial, INTERRUPTED).startswith(INTERRUPTED)
