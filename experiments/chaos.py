"""Chaos: kill `squeezer search` with SIGKILL at random moments, resume each time, and check nothing was lost.

    python experiments/chaos.py --backend optuna --kills 10 --trials 30

Each round starts the same command and kills its whole process group at a random moment: odd rounds while it starts
(opening the stores, reconciling MLflow), even rounds while trials run (a random 0-2 s after its first new trial
finished: in training, in the storage write, in the MLflow queue). Then it checks the stores: every trial that was
COMPLETE before stays COMPLETE with the same values. A last run goes to the target. At the end:
the target is reached, no Optuna trial and no MLflow run is left RUNNING, and the COMPLETE trials are exactly the
trials with a FINISHED MLflow run. Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient

EXPERIMENT = Path(__file__).with_name("digits.yaml")


#: When start-up kills happen, in seconds after the start (Ray's start-up takes longer).
START_UP = {"optuna": (0.5, 5.0), "ray": (0.5, 11.0)}


def run_chaos(backend: str, kills: int, trials: int, workdir: Path, seed: int = 0) -> dict[str, Any]:
    """Kill and resume ``kills`` times, finish the study, and return what was checked (raises if a check fails)."""
    rng = random.Random(seed)
    storage, tracking = f"sqlite:///{workdir}/optuna.db", f"sqlite:///{workdir}/mlflow.db"
    command = [sys.executable, "-m", "squeezer.search.cli", "search", str(EXPERIMENT), "--backend", backend,
               "--trials", str(trials), "--storage", storage, "--tracking-uri", tracking]
    env = {**os.environ, "SQUEEZER_RAY_RESULTS": str(workdir / "ray_results")}
    rounds, seen = [], {}
    for kill in range(kills):
        during = "start-up" if kill % 2 == 0 else "trials"
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        if during == "start-up":
            time.sleep(rng.uniform(*START_UP[backend]))
        elif _await_new_trial(process, storage, len(seen)):
            time.sleep(rng.uniform(0.0, 2.0))
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
                       "complete": len(complete), "finished_before_kill": finished_early})
    started = time.monotonic()
    final = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    if final.returncode != 0:
        raise AssertionError(f"the last run failed: {final.stderr[-2000:]}")
    return {"backend": backend, "kills": kills, "trials": trials, "rounds": rounds,
            "final_run_s": round(time.monotonic() - started, 1), **_check(storage, tracking, trials, seen)}


def _await_new_trial(process: subprocess.Popen, storage: str, before: int, timeout: float = 120.0) -> bool:
    """Wait until the study holds more COMPLETE trials than ``before`` (False if the process ended first)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if len(_complete(storage)) > before:
            return True
        time.sleep(0.2)
    return False


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
    checks = {
        "target reached": len(complete) + len(failed_ran) >= target,
        "no finished trial lost": all(n in complete for n in seen),
        "no Optuna trial RUNNING": "RUNNING" not in states,
        "no MLflow run RUNNING": all(r.info.status != "RUNNING" for r in runs),
        "COMPLETE trials == FINISHED runs": complete == finished_runs,
        "one parent run": sum(r.data.tags.get("squeezer.role") == "study" for r in runs) == 1,
    }
    broken = [name for name, ok in checks.items() if not ok]
    if broken:
        raise AssertionError(f"chaos checks failed: {broken}; COMPLETE {sorted(complete)}, "
                             f"FINISHED runs {sorted(finished_runs)}, states {states}")
    return {"complete": len(complete), "failed": len(failed_ran), "optuna_trials": len(states),
            "interrupted": states.count("FAIL") - len(failed_ran), "killed_runs": sum(
                r.info.status == "KILLED" for r in trial_runs), "checks": checks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["optuna", "ray"], default="optuna")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON results file (default: chaos-<backend>.json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="squeezer-chaos-") as workdir:
        result = run_chaos(args.backend, args.kills, args.trials, Path(workdir), args.seed)
    print(f"{'round':>5} {'during':>8} {'killed at (s)':>13} {'COMPLETE trials':>15}")
    for r in result["rounds"]:
        print(f"{r['round']:>5} {r['during']:>8} {r['killed_at_s']:>13.2f} {r['complete']:>15}"
              + ("  (ended before the kill)" if r["finished_before_kill"] else ""))
    print(f"final: {result['complete']} complete, {result['failed']} failed, {result['interrupted']} interrupted "
          f"and re-run, {result['killed_runs']} KILLED runs; every check passed: {', '.join(result['checks'])}")
    Path(args.out or f"chaos-{args.backend}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
