"""The Ray cluster a study runs on: joined at its address, or a private local Ray started (and, at the end, stopped)
by this process; checked before anything is written (the address answers, a trial's CPUs and GPUs fit on a node);
how many trials it runs at once."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Mapping

import ray

from squeezer.search.errors import ConfigError
from squeezer.search.config.run_settings import SearchSettings

CONNECT_S = 5.0
_started = False  # whether this process started (and so stops) Ray


def join(settings: SearchSettings) -> None:
    """Join (or start) Ray and check that a trial fits on one of its nodes, before any store is written: a malformed
    or silent address, or more CPUs per trial than any node has, is one ``ConfigError`` rather than a hang."""
    global _started
    if settings.address:
        _check_address(settings.address)
    try:
        _started = _connect(settings.address) or _started
    except Exception as err:  # noqa: BLE001 - Ray's own errors for a cluster it cannot join
        raise ConfigError("search.address", f"cannot join the Ray cluster ({type(err).__name__}: "
                          f"{(str(err).strip().splitlines() or [''])[0]})", settings.address) from None
    for key, resource, wanted in (("cpus_per_trial", "CPU", settings.cpus_per_trial),
                                  ("gpus_per_trial", "GPU", settings.gpus_per_trial or 0)):
        largest = max((node["Resources"].get(resource, 0) for node in ray.nodes() if node.get("Alive")), default=0)
        if wanted > largest:
            if _started:
                ray.shutdown()
                _started = False
            raise ConfigError(f"search.{key}", f"must fit on one node of the Ray cluster; its largest has "
                              f"{largest:g} {resource}s", wanted)


def _check_address(address: str) -> None:
    """``HOST:PORT`` (or ``ray://HOST:PORT``, or ``auto``), answering within seconds."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("search.address", "must be HOST:PORT of a Ray head (or ray://HOST:PORT, or auto)", address)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_S).close()
    except OSError as err:
        raise ConfigError("search.address", f"no Ray head answers there within {CONNECT_S:g} s ({err})",
                          address) from None


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address``, or start a private local Ray; True when this call started Ray."""
    for name, value in _QUIET.items():  # how Tune runs here, whoever started Ray
        os.environ.setdefault(name, value)
    if ray.is_initialized():
        return False
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    # "token authentication is enabled": Ray's default, worth no warning on every start (a logger name, no API)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    main = threading.current_thread() is threading.main_thread()
    ours = signal.getsignal(signal.SIGTERM) if main else None  # the command line's: the one resume line
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:  # bounded CPUs, no dashboard, loopback only
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.1",
                 logging_level=logging.WARNING, log_to_driver=False)
    if main and callable(ours):
        # ray.init puts its own SIGTERM handler behind its core worker's failure handler, which dumps a stack on
        # SIGTERM; the study's handler, installed again, replaces both at the C level
        signal.signal(signal.SIGTERM, ours)
    return True


_QUIET = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # results go to MLflow, not to per-trial CSV/JSON files
    "TUNE_GLOBAL_CHECKPOINT_S": "1",  # save Tune's state often: less to redo after a crash
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # ... which is what we want, without a warning
    "RAY_AIR_NEW_OUTPUT": "0",  # our progress lines, not Tune's tables
    "RAY_DEDUP_LOGS": "0",
}


def at_once(resources: Mapping[str, float], settings: SearchSettings) -> int:
    """Trials the cluster's ``resources`` run at once: as many as its CPUs (and GPUs, when trials take a share of
    one) hold."""
    fits = [resources.get("CPU", 1) / settings.cpus_per_trial]
    if settings.gpus_per_trial:
        fits.append(resources.get("GPU", 0) / settings.gpus_per_trial)
    return max(1, int(min(fits) + 1e-9))


def describe(settings: SearchSettings) -> str:
    total = ray.cluster_resources()
    gpus = f", {total.get('GPU', 0):g} GPUs ({settings.gpus_per_trial:g} per trial)" if settings.gpus_per_trial else ""
    return f"{total.get('CPU', 0):g} CPUs{gpus}"




def leave() -> None:
    """Stop the local Ray this process started, if it did."""
    global _started
    if _started:
        ray.shutdown()
        _started = False
