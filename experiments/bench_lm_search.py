"""Which search spends a language-model study's minutes best? Hypervolume at equal wall time, several seeds.

    python experiments/bench_lm_search.py --minutes 6 --seeds 3 --steps 60    # the KJV study, lm_kjv.yaml
    python experiments/bench_lm_search.py --config experiments/lm_rotten_tomatoes.yaml \
        --out experiments/results/bench_lm_search_rt.json                    # a second corpus

Each method — random search, NSGA-II, Squeezer's sampler, Squeezer's sampler with successive halving — runs the KJV
study (``lm_distill.steps`` cut to ``--steps``, a third of it per evaluation) for the same wall time
(``search.timeout_s``: no trial starts after it; the one running ends; ``measure.repeats`` cut to ``--repeats``),
seed by seed, the methods of a seed one after another in a rotating order. The hypervolume is the front's of the
completed trials (the study's own teacher-scaled units, ``squeezer.search.results.scoring``; the two baselines, int4
and int8 builds of the teacher, count for every method alike), read at each trial's end: the table gives it at the
common time (the earliest a method's last trial ended, over the seeds: no method is read past its end) and at its
own end. Prints a table, writes JSON and Markdown. The teacher's top-k cache is computed once (the first study) and
loaded by every other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from squeezer.search.config.experiment import load_config, parse_config
from squeezer.search.results import scoring
from squeezer.search.runner import run_study

HERE = Path(__file__).resolve().parent
METHODS = {"random": ("random", "none"), "nsga2": ("nsga2", "none"), "squeezer": ("squeezer", "none"),
           "squeezer+halving": ("squeezer", "halving")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=HERE / "lm_kjv.yaml")
    parser.add_argument("--minutes", type=float, default=6.0, help="each method's wall time per seed")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150, help="lm_distill.steps of every trial (the maximum)")
    parser.add_argument("--repeats", type=int, default=10, help="measure.repeats: timing rounds per student")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (training.threads and "
                                                    "measure.threads); default: the study's own")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_lm_search.json")
    args = parser.parse_args(argv)
    methods = [m for m in METHODS if m in args.methods.split(",")]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            order = methods[seed % len(methods):] + methods[:seed % len(methods)]  # who runs first rotates
            for method in order:
                run = study(config(args, method, seed), Path(tmp), f"{method.replace('+', '-')}-{seed}",
                            args.minutes * 60)
                runs[method].append(run)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.with_suffix(".partial.json").write_text(json.dumps(runs))  # what finished, if stopped
                print(f"{method} seed {seed}: {run['trials']} trials ({run['stopped']} stopped early), hypervolume "
                      f"{run['hv'][-1] if run['hv'] else 0:.4f} at {run['seconds'][-1] if run['seconds'] else 0:.0f} s",
                      file=sys.stderr)
    common = min(r["seconds"][-1] for rs in runs.values() for r in rs if r["seconds"])
    rows = [row(m, runs[m], common) for m in methods]
    table = render(rows, common, args, load_config(args.config).name)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "common_s": common,
                                    "rows": rows, "runs": runs, "table": table}, indent=2))
    args.out.with_suffix(".md").write_text(table + "\n")
    return 0


def config(args: argparse.Namespace, method: str, seed: int) -> Any:
    raw = load_config(args.config).raw
    sampler, scheduler = METHODS[method]
    pipeline = [{"lm_distill": {**step["lm_distill"], "steps": args.steps, "eval_every": max(1, args.steps // 3)}}
                if "lm_distill" in step else step for step in raw["pipeline"]]
    search = {"sampler": sampler, "scheduler": scheduler, "trials": 1000, "timeout_s": args.minutes * 60}
    if sampler == "nsga2":
        search["population_size"] = 8
    measure = {**raw.get("measure", {}), "repeats": args.repeats}
    training = dict(raw.get("training", {}))
    if args.threads:
        measure["threads"] = training["threads"] = args.threads
    return parse_config({**raw, "seed": seed, "pipeline": pipeline, "search": search, "measure": measure,
                         "training": training}, base_dir=args.config.parent)


def study(cfg: Any, tmp: Path, name: str, budget_s: float) -> dict[str, Any]:
    """Run one study for its wall time; the hypervolume after each trial ended, and when (seconds since its first
    trial started: the teacher's measurement and cache are not the method's time)."""
    result = run_study(cfg, study_name=name, storage=f"sqlite:///{tmp}/{name}.db",  # a store per study
                       tracking_uri=f"sqlite:///{tmp}/{name}-mlflow.db", out=lambda line: None, quiet=True)
    s = result.study
    teacher = s.user_attrs["teacher"]
    spent = sorted((t for t in s.trials if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)),
                   key=lambda t: t.datetime_complete)
    started = min(t.datetime_start.timestamp() for t in spent)
    hv = scoring.history([t.user_attrs["metrics"] if t.state == TrialState.COMPLETE else None for t in spent],
                         cfg.objectives, teacher, cfg.search.reference)
    return {"hv": hv, "seconds": [t.datetime_complete.timestamp() - started for t in spent],
            "trials": len(spent), "stopped": sum(t.state == TrialState.PRUNED for t in spent),
            "failed": sum(t.state == TrialState.FAIL for t in spent), "budget_s": budget_s}


def at(run: dict[str, Any], seconds: float) -> float:
    """The run's hypervolume at ``seconds``: of the trials that had ended by then."""
    done = [hv for hv, t in zip(run["hv"], run["seconds"], strict=True) if t <= seconds]
    return done[-1] if done else 0.0


def row(method: str, runs: list[dict[str, Any]], common: float) -> dict[str, Any]:
    at_common = [at(r, common) for r in runs]
    final = [r["hv"][-1] if r["hv"] else 0.0 for r in runs]
    return {"method": method, "hv_common": at_common, "hv_final": final,
            "mean_common": statistics.mean(at_common), "sd_common": statistics.pstdev(at_common),
            "mean_final": statistics.mean(final), "trials": [r["trials"] for r in runs],
            "stopped": [r["stopped"] for r in runs], "end_s": [r["seconds"][-1] if r["seconds"] else 0 for r in runs]}


def render(rows: list[dict[str, Any]], common: float, args: argparse.Namespace, name: str) -> str:
    lines = [f"Hypervolume of the {name} front at equal wall time ({args.minutes:g} min per method and seed, "
             f"lm_distill.steps {args.steps}, {args.seeds} seeds; read at {common:.0f} s, the earliest end)", "",
             "| method | hv at common time (mean ± sd) | per seed | hv at own end | trials (stopped) |",
             "|---|---:|---|---:|---|"]
    for r in sorted(rows, key=lambda r: -r["mean_common"]):
        lines.append(f"| {r['method']} | {r['mean_common']:.4f} ± {r['sd_common']:.4f} | "
                     f"{', '.join(f'{v:.4f}' for v in r['hv_common'])} | {r['mean_final']:.4f} | "
                     f"{', '.join(f'{t} ({s})' for t, s in zip(r['trials'], r['stopped'], strict=True))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    t0 = time.time()
    code = main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    sys.exit(code)
