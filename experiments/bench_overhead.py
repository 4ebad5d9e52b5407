"""Where a study's wall time goes: start-up, prepare, student training, measuring, tracking, sampler and storage.

    python experiments/bench_overhead.py            # digits (30 trials) and Fashion-MNIST (8 trials, 10k images)

Each experiment runs as a fresh `squeezer search`-like process (Optuna backend, temporary stores, cached teacher) with
timers around Squeezer's own phases. Times are exclusive: a tracking call made while measuring counts as tracking.
Per-trial overhead is everything in the trial loop except student training (building, distilling, pruning,
quantizing), as a share of the loop's wall time. Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # before any import of Squeezer: start-up counts the imports

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

HERE = Path(__file__).resolve().parent
#: name -> (config, overrides, trials, storage): SQLite (the default) and Optuna's journal file.
EXPERIMENTS: dict[str, tuple[str, dict[str, Any], int, str]] = {
    "digits": ("digits.yaml", {}, 30, "sqlite"),
    "digits (journal)": ("digits.yaml", {}, 30, "journal"),
    "fashion_mnist": ("fashion_mnist.yaml", {}, 6, "sqlite"),  # the demo as shipped, 6 of its 30 trials
}
PHASES = ("start-up", "prepare", "stores set-up", "training", "measuring", "tracking", "sampler+storage",
          "tracking (study)", "finish", "other")
PER_TRIAL = ("measuring", "tracking", "sampler+storage")


class Clock:
    """Exclusive time per phase: time spent in a nested phase is taken off its parent."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.stack: list[list[Any]] = []  # [phase, start, time of nested phases]

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.stack.append([name, time.perf_counter(), 0.0])
        try:
            yield
        finally:
            phase, start, nested = self.stack.pop()
            elapsed = time.perf_counter() - start
            self.spent[phase] += elapsed - nested
            if self.stack:
                self.stack[-1][2] += elapsed

    def wrap(self, owner: Any, attribute: str, phase: str | Callable[[], str]) -> None:
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(phase() if callable(phase) else phase):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)

    def inside(self, phase: str) -> bool:
        return any(frame[0] == phase for frame in self.stack)


def inner(config_path: Path, overrides: dict[str, Any], trials: int, storage: str, out: Path) -> None:
    """One study in this process, with every phase timed; writes the phase times to ``out``."""
    clock = Clock()
    from squeezer.search import runner
    from squeezer.search.study import session as study
    from squeezer.search.trial import run as trial
    from squeezer.search.backends import optuna as optuna_backend
    from squeezer.search.config.experiment import parse_config
    from squeezer.search.results.tracking import Tracker
    from squeezer.search.config.yamlfile import read_yaml
    from squeezer.search.trial.workbench import Workbench

    raw = read_yaml(config_path)
    for key, value in overrides.items():
        section, name = key.split(".")
        steps = {step_name: settings for step in raw["pipeline"] if isinstance(step, dict)
                 for step_name, settings in step.items()}
        target = steps[section] if section in steps else raw.setdefault(section, {})
        target[name] = value
    config = parse_config(raw, config_path.parent)
    clock.spent["start-up"] = time.perf_counter() - T0
    with clock.phase("other"):

        clock.wrap(runner, "prepare", "prepare")
        clock.wrap(runner, "open_study", "stores set-up")
        clock.wrap(Workbench, "baseline", "prepare")
        clock.wrap(optuna_backend, "run", "sampler+storage")
        clock.wrap(study.Session, "finish", "finish")
        clock.wrap(trial, "run_trial", "training")
        clock.wrap(trial, "measure", "measuring")
        clock.wrap(Tracker, "__init__", "stores set-up")
        def tracking() -> str:  # per trial inside the trial loop, else once per study
            return "tracking" if clock.inside("sampler+storage") else "tracking (study)"

        for name in ("trial_run", "log_result", "end", "kill", "set_tag", "find_study_run", "create_study_run",
                     "reopen", "trial_runs", "finish_study", "flush", "close"):
            clock.wrap(Tracker, name, tracking)
        with tempfile.TemporaryDirectory() as workdir:
            loop_start = time.perf_counter()
            url = f"journal:{workdir}/optuna.journal" if storage == "journal" else f"sqlite:///{workdir}/optuna.db"
            runner.run_study(config, trials=trials, storage=url,
                            tracking_uri=f"sqlite:///{workdir}/mlflow.db", out=lambda line: None)
            run_s = time.perf_counter() - loop_start
    loop = sum(clock.spent[p] for p in ("training", *PER_TRIAL))
    result = {"trials": trials, "wall_s": time.perf_counter() - T0, "run_study_s": run_s, "loop_s": loop,
              "phases_s": clock.spent, "per_trial_overhead": sum(clock.spent[p] for p in PER_TRIAL) / loop}
    out.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(EXPERIMENTS), help="run one experiment")
    parser.add_argument("--trials", type=int, help="trials per experiment (default: 30 digits, 8 Fashion-MNIST)")
    parser.add_argument("--out", default="bench_overhead.json")
    parser.add_argument("--inner", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        config, overrides, trials, storage, out = args.inner
        return inner(Path(config), json.loads(overrides), int(trials), storage, Path(out))
    results = {}
    for name, (file, overrides, trials, storage) in EXPERIMENTS.items():
        if args.only and name != args.only:
            continue
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, __file__, "--inner", str(HERE / file), json.dumps(overrides),
                       str(args.trials or trials), storage, out.name]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            results[name] = json.loads(Path(out.name).read_text())
    print(table(results))
    Path(args.out).write_text(json.dumps(results, indent=2))


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    lines = [f"| phase (s) | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for phase in PHASES:
        lines.append(f"| {phase} | " + " | ".join(f"{results[n]['phases_s'][phase]:.2f}" for n in names) + " |")
    lines.append("| **wall time** | " + " | ".join(f"{results[n]['wall_s']:.2f}" for n in names) + " |")
    lines.append("| trials | " + " | ".join(str(results[n]["trials"]) for n in names) + " |")
    lines.append("| **per-trial overhead** (measuring + tracking + sampler, share of the trial loop) | "
                 + " | ".join(f"{100 * results[n]['per_trial_overhead']:.1f} %" for n in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
