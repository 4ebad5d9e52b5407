"""Trials per hour on digits: one Optuna process with 2 threads, two Optuna processes with 1 thread each on one
study, and Ray with 2 concurrent trials of 1 CPU each, side by side in one run.

    python experiments/bench_scaling.py [--trials 60] [--repeats 3]

Throughput is finished trials over the span from the first trial's start to the last trial's end, as recorded in the
study storage (start-up excluded); the wall time of the whole command, start-up included, is shown beside it.
The setups run interleaved, ``--repeats`` rounds; the table shows medians (this machine is noisy). Prints a table and
writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from squeezer.search.study.storage import open_storage

EXPERIMENT = Path(__file__).with_name("digits.yaml")
JOURNAL = ["--storage", "journal:{workdir}/optuna.journal"]
SETUPS = {  # name -> (processes, torch threads per process, extra arguments)
    "1 Optuna process x 2 threads": (1, 2, []),
    "2 Optuna processes x 1 thread": (2, 1, []),
    "1 Optuna process x 2 threads, journal storage": (1, 2, JOURNAL),
    "2 Optuna processes x 1 thread, journal storage": (2, 1, JOURNAL),
    "Ray: 2 concurrent trials x 1 CPU": (1, 2, ["--backend", "ray", "--max-concurrent", "2", "--cpus-per-trial", "1"]),
}


def run_setup(processes: int, threads: int, extra: list[str], trials: int, workdir: Path) -> dict[str, Any]:
    extra = [arg.format(workdir=workdir) for arg in extra]
    storage = extra[extra.index("--storage") + 1] if "--storage" in extra else f"sqlite:///{workdir}/optuna.db"
    command = [sys.executable, "-m", "squeezer.search.cli", "search", str(EXPERIMENT), "--trials", str(trials),
               "--tracking-uri", f"sqlite:///{workdir}/mlflow.db", *extra]
    if "--storage" not in extra:
        command += ["--storage", storage]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SQUEEZER_RAY_RESULTS": str(workdir / "ray")}
    started = time.monotonic()
    workers = [subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True) for _ in range(processes)]
    errors = [w.communicate()[1] for w in workers]
    wall = time.monotonic() - started
    if any(w.returncode for w in workers):
        raise RuntimeError(f"a search failed: {errors}")
    done = optuna.load_study(study_name="digits", storage=open_storage(storage)).get_trials(
        states=[optuna.trial.TrialState.COMPLETE])
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"trials": len(done), "span_s": round(span, 2), "wall_s": round(wall, 2),
            "trials_per_hour": round(len(done) / span * 3600), "trials_per_hour_wall": round(len(done) / wall * 3600)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench_scaling.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as warm:  # train and cache the teacher outside the timings
        run_setup(1, 2, [], 1, Path(warm))
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in SETUPS}
    for _ in range(args.repeats):
        for name, (processes, threads, extra) in SETUPS.items():
            with tempfile.TemporaryDirectory() as workdir:
                rounds[name].append(run_setup(processes, threads, extra, args.trials, Path(workdir)))
    results = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {"rounds": runs}
               for name, runs in rounds.items()}
    print("| setup | trials | trial span (s) | trials/hour | vs 1x2 (same storage) | wall, start-up incl. (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        base = results["1 Optuna process x 2 threads" + (", journal storage" if "journal" in name else "")]
        print(f"| {name} | {r['trials']:.0f} | {r['span_s']:.1f} | {r['trials_per_hour']:.0f} | "
              f"{r['trials_per_hour'] / base['trials_per_hour']:.2f}x | {r['wall_s']:.1f} |")
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
