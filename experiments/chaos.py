"""Chaos: kill `squeezer search` with SIGKILL at random moments, resume each time, and check nothing was lost.

    python experiments/chaos.py --backend optuna --kills 10 --trials 30

Each round starts the same command and kills its whole process group at a random moment: even rounds while it starts
(opening the stores, reconciling MLflow, starting Ray), odd rounds while trials run. Start-up kills fall before the
time the last restart took to run a trial again; trial kills fall a random `--window` seconds after the first trial
of the round started, so they land in training, in storage writes and in the MLflow queue (on Ray, 20-60 s into the
run). Each round reports its **restart-to-first-trial time**: from the command's start until trials run again (a new
trial starts, or one finishes: Tune first reruns the trials it restores, which started in the last life). After each
round every trial that was COMPLETE stays COMPLETE with the
same values. A last run goes to the target. At the end: the target is reached, no Optuna trial and no MLflow run is
left RUNNING, each trial has at most one MLflow run, every FAILED trial carries its reason, and the COMPLETE trials are
exactly the trials with a FINISHED MLflow run. Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient

EXPERIMENT = Path(__file__).with_name("digits.yaml")
#: Targets for the restart-to-first-trial time on this project's 2-core machine.
RESTART_TARGET_S = {"optuna": 15.0, "ray": 30.0}
#: Trial kills land up to this long after a round's first trial started (digits trials take about 0.5 s in this
#: process, 1-3 s on Ray, whose rounds then end 20-60 s into the run).
WINDOW_S = {"optuna": 5.0, "ray": 30.0}


def run_chaos(backend: str, kills: int, trials: int, workdir: Path, seed: int = 0,
              window: float | None = None) -> dict[str, Any]:
    """Kill and resume ``kills`` times, finish the study, and return what was checked (raises if a check fails)."""
    rng, window = random.Random(seed), WINDOW_S[backend] if window is None else window
    storage, tracking = f"sqlite:///{workdir}/optuna.db", f"sqlite:///{workdir}/mlflow.db"
    command = [sys.executable, "-m", "squeezer.search.cli", "search", str(EXPERIMENT), "--backend", backend,
               "--trials", str(trials), "--storage", storage, "--tracking-uri", tracking]
    env = {**os.environ, "SQUEEZER_RAY_RESULTS": str(workdir / "ray_results")}
    rounds, seen, restarts = [], {}, []
    for kill in range(kills):
        during = "start-up" if kill % 2 == 0 else "trials"
        started, wall = time.monotonic(), dt.datetime.now()
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        restart = None
        if during == "start-up" and restarts:  # before the point a trial ran last time
            time.sleep(rng.uniform(0.5, max(1.0, statistics.median(restarts))))
        else:
            restart = _await_trials_running(process, storage, wall, len(seen))
            if restart is not None:
                restarts.append(restart)
                time.sleep(rng.uniform(0.0, window) if during == "trials" else 0.0)
        moment = time.monotonic() - started
        finished_early = process.poll() is not None
        if not finished_early:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        complete = _complete(storage)
        lost = [n for n, values in seen.items() if complete.get(n) != values]
        if lost:
            raise AssertionError(f"round {kill + 1}: finished trials {lost} were lost or changed")
        seen = complete
        rounds.append({"round": kill + 1, "during": during, "killed_at_s": round(moment, 2),
                       "restart_to_first_trial_s": None if restart is None else round(restart, 2),
                       "complete": len(complete), "finished_before_kill": finished_early})
    started = time.monotonic()
    final = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    if final.returncode != 0:
        raise AssertionError(f"the last run failed: {final.stderr[-2000:]}")
    timed = [r["restart_to_first_trial_s"] for r in rounds[1:] if r["restart_to_first_trial_s"] is not None]
    return {"backend": backend, "kills": kills, "trials": trials, "rounds": rounds,
            "final_run_s": round(time.monotonic() - started, 1),
            "restart_to_first_trial_s": {"median": statistics.median(timed) if timed else None,
                                         "max": max(timed, default=None), "target": RESTART_TARGET_S[backend]},
            **_check(storage, tracking, trials, seen)}


def _await_trials_running(process: subprocess.Popen, storage: str, since: dt.datetime, complete: int,
                          timeout: float = 180.0) -> float | None:
    """Seconds until trials run again: a new trial starts (``datetime_start`` after ``since``), or one finishes (Ray
    Tune first reruns the trials it restores, which started in the last life); None if the process ended first."""
    begun, deadline = time.monotonic(), time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        trials = _trials(storage)
        if any(t.datetime_start and t.datetime_start >= since for t in trials) or \
                sum(t.state.name == "COMPLETE" for t in trials) > complete:
            return time.monotonic() - begun
        time.sleep(0.1)
    return None


def _trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="digits", storage=storage).get_trials(deepcopy=False)
    except (KeyError, Exception):  # noqa: BLE001 - not created yet, or being created by the killed process
        return []


def _complete(storage: str) -> dict[int, list[float]]:
    try:
        study = optuna.load_study(study_name="digits", storage=storage)
    except KeyError:  # killed before the study existed
        return {}
    return {t.number: t.values for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])}


def _check(storage: str, tracking: str, target: int, seen: dict[int, list[float]]) -> dict[str, Any]:
    study = optuna.load_study(study_name="digits", storage=storage)
    states = [t.state.name for t in study.trials]
    failed_ran = [t for t in study.trials if t.state.name == "FAIL"
                  and not t.user_attrs.get("fail_reason", "interrupted").startswith("interrupted")]
    complete = {t.number for t in study.trials if t.state.name == "COMPLETE"}
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("squeezer-digits")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    trial_runs = [r for r in runs if r.data.tags.get("squeezer.role") == "trial"]
    finished_runs = {int(r.data.tags["squeezer.trial"]) for r in trial_runs if r.info.status == "FINISHED"}
    per_trial = Counter(int(r.data.tags["squeezer.trial"]) for r in trial_runs)
    reasonless = [t.number for t in study.trials if t.state.name == "FAIL" and not t.user_attrs.get("fail_reason")]
    reasonless_runs = [r.data.tags["squeezer.trial"] for r in trial_runs if r.info.status in ("FAILED", "KILLED")
                       and not r.data.tags.get("squeezer.error")]
    checks = {
        "target reached": len(complete) + len(failed_ran) >= target,
        "no finished trial lost": all(n in complete for n in seen),
        "no Optuna trial RUNNING": "RUNNING" not in states,
        "no MLflow run RUNNING": all(r.info.status != "RUNNING" for r in runs),
        "COMPLETE trials == FINISHED runs": complete == finished_runs,
        "one parent run": sum(r.data.tags.get("squeezer.role") == "study" for r in runs) == 1,
        "at most one run per trial": all(n == 1 for n in per_trial.values()),
        "every FAILED trial has its reason": not reasonless,
        "every FAILED or KILLED run has its reason": not reasonless_runs,
    }
    broken = [name for name, ok in checks.items() if not ok]
    if broken:
        raise AssertionError(f"chaos checks failed: {broken}; COMPLETE {sorted(complete)}, "
                             f"FINISHED runs {sorted(finished_runs)}, states {states}, runs per trial "
                             f"{ {n: c for n, c in per_trial.items() if c > 1} }, reasonless trials {reasonless}, "
                             f"runs {reasonless_runs}")
    return {"complete": len(complete), "failed": len(failed_ran), "optuna_trials": len(states),
            "interrupted": states.count("FAIL") - len(failed_ran), "killed_runs": sum(
                r.info.status == "KILLED" for r in trial_runs), "checks": checks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["optuna", "ray"], default="optuna")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=float, default=None,
                        help=f"trial kills: up to this long after a trial starts (default: {WINDOW_S})")
    parser.add_argument("--out", default=None, help="JSON results file (default: chaos-<backend>.json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="squeezer-chaos-") as workdir:
        result = run_chaos(args.backend, args.kills, args.trials, Path(workdir), args.seed, args.window)
    print(f"{'round':>5} {'during':>8} {'killed at (s)':>13} {'restart to 1st trial (s)':>24} {'COMPLETE':>8}")
    for r in result["rounds"]:
        restart = "" if r["restart_to_first_trial_s"] is None else f"{r['restart_to_first_trial_s']:.2f}"
        print(f"{r['round']:>5} {r['during']:>8} {r['killed_at_s']:>13.2f} {restart:>24} {r['complete']:>8}"
              + ("  (ended before the kill)" if r["finished_before_kill"] else ""))
    timing = result["restart_to_first_trial_s"]
    print(f"restart to first trial (rounds after the first): median {timing['median']} s, max {timing['max']} s "
          f"(target <= {timing['target']:g} s)")
    print(f"final: {result['complete']} complete, {result['failed']} failed, {result['interrupted']} interrupted "
          f"and re-run, {result['killed_runs']} KILLED runs; every check passed: {', '.join(result['checks'])}")
    Path(args.out or f"chaos-{args.backend}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
