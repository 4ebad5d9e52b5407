"""``search.jobs`` / ``--jobs N`` on the Optuna backend: N processes on one machine run the study's trials at once.

The study's own process prepares everything first (data, the teacher, its cached outputs), then starts N - 1 worker
processes that join the study as any other process with the same ``--study-name`` would (they load the teacher and its
outputs from the cache), and runs trials itself. The workers stop at the study's target with it; the study's process
waits for them, then records the front. A worker writes its output to a log file beside the others
(``$TMPDIR/squeezer-jobs/<study>.<n>.log``). Each process trains with ``training.threads`` torch threads (default:
the cores shared out among the jobs); on a machine with several GPUs, the jobs are spread over them
(``hardware.for_job``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import signal
import tempfile
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Callable

from squeezer.search import hardware
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.errors import ConfigError


def for_job_config(config: ExperimentConfig, job: int) -> ExperimentConfig:
    """``config`` as job ``job`` of its ``search.jobs`` runs it: on its GPU (``hardware.for_job``)."""
    device = hardware.for_job(config.training.device, job)
    return config if device == config.training.device else \
        dataclasses.replace(config, training=dataclasses.replace(config.training, device=device))


def log_path(study: str, n: int) -> Path:
    return Path(tempfile.gettempdir()) / "squeezer-jobs" / f"{study}.{n}.log"


def start(count: int, study: str, run: Callable[..., Any], arguments: dict[str, Any],
          say: Callable[[str], None]) -> list[BaseProcess]:
    """Start ``count`` worker processes running ``run(**arguments)`` (``runner.run_study``, sent by name) without
    recording the front, each on its GPU where there are several (the study's process is job 0)."""
    try:
        pickle.dumps(arguments)
    except Exception as err:  # noqa: BLE001 - whatever the user's objects raise when pickled
        raise ConfigError("search.jobs", "sends the data and models to worker processes, and these cannot be "
                          f"pickled ({type(err).__name__}: {err}); use jobs: 1", count + 1) from None
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch or store state shared by fork
    workers = []
    for n in range(1, count + 1):
        log = log_path(study, n)
        log.parent.mkdir(parents=True, exist_ok=True)
        own = {**arguments, "config": for_job_config(arguments["config"], n)}
        worker = context.Process(target=_work, args=(run, own, str(log)), name=f"squeezer-job-{n}", daemon=False)
        worker.start()
        workers.append(worker)
    say(f"jobs: this process and {count} worker process(es) run trials at once (their output: "
        f"{log_path(study, 1).parent}/{study}.N.log)")
    return workers


def wait(workers: list[BaseProcess], study: str, say: Callable[[str], None]) -> None:
    """Wait for the workers; a worker that failed is reported with its log (the study's trials are in the storage)."""
    for n, worker in enumerate(workers, start=1):
        worker.join()
        if worker.exitcode not in (0, None):
            say(f"jobs: worker {n} ended with exit code {worker.exitcode}; see {log_path(study, n)}")


def stop(workers: list[BaseProcess]) -> None:
    """Stop the workers as Ctrl-C stops a study: their running trials are recorded as interrupted."""
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join(timeout=60)


def _work(run: Callable[..., Any], arguments: dict[str, Any], log: str) -> None:
    with open(log, "w", buffering=1) as out:  # noqa: PTH123 - the file descriptor is what is redirected
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        os.environ["SQUEEZER_PROGRESS"] = "plain"
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the study's process decides
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            run(**arguments, out=lambda line: print(line, flush=True), finish=False)
        except KeyboardInterrupt:
            print("stopped: its running trial is recorded as interrupted", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt
