"""Compare distillation settings ("arms") on one fixed student, several seeds each, the same epoch budget.

    python experiments/kd_compare.py experiments/kd/adaptive_kd.yaml
    python experiments/kd_compare.py experiments/kd/kd_methods.yaml

The YAML names a study config (its data and teacher), the student, the seeds, the settings every arm shares and
the arms. An optional ``tune`` section first searches the fixed-KD temperature and soft weight (hard = 1 − soft) with
Optuna's TPE on validation accuracy (seed 0); arms with ``tuned: true`` start from what it found. Test accuracy is on
the official test split, which neither the tuning nor training sees. Writes ``results/<name>.json`` and
``results/<name>.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from squeezer import compressors
from squeezer.compressors import TrialContext
from squeezer.compressors.distill.trainer import _labeled
from squeezer.compressors.training import accuracy
from squeezer.search import models
from squeezer.search.config.experiment import load_config, parse_config
from squeezer.search.trial.workbench import Workbench, prepare
from squeezer.search.config.yamlfile import read_yaml

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("--seeds", type=int, nargs="*", help="override the plan's seeds")
    parser.add_argument("--epochs", type=int, help="override the plan's epoch budget")
    args = parser.parse_args(argv)
    plan = read_yaml(args.plan)
    torch.set_num_threads(int(plan.get("threads", 1)))
    shared = {**plan.get("shared", {}), **({"epochs": args.epochs} if args.epochs else {})}
    seeds = args.seeds or plan["seeds"]
    bench = prepare(_study_config(plan, args.plan.parent))
    tuned = _tune(plan["tune"], plan["student"], shared, bench) if plan.get("tune") else {}
    runs = []
    for arm, settings in plan["arms"].items():
        settings = dict(settings or {})
        labeled_only = settings.pop("labeled_only", None)
        merged = {**shared, **(tuned if settings.pop("tuned", False) else {}), **settings}
        for seed in seeds:
            run = train(bench, plan["student"], merged, seed, labeled_only)
            print(f"{arm:32s} seed {seed}: test {run['test_accuracy']:.4f}  {run['seconds']:.1f}s", flush=True)
            runs.append({"arm": arm, "seed": seed, "settings": merged, **run})
    result = summarise(plan, runs, tuned)
    out = HERE / "results" / plan["name"]
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(result["table"] + "\n")
    print(result["table"])
    return 0


def _study_config(plan: dict[str, Any], base: Path) -> Any:
    config = load_config(base / plan["study"])
    if plan.get("teacher"):  # e.g. an ensemble of teachers for multi-teacher arms
        raw = {**config.raw, "teacher": {**config.raw["teacher"], **plan["teacher"]}}
        config = parse_config(raw, base_dir=(base / plan["study"]).parent)
    return config


def train(bench: Workbench, student: dict[str, Any], settings: dict[str, Any], seed: int,
          labeled_only: float | None = None) -> dict[str, Any]:
    """Distil a fresh student under ``settings``: its per-epoch validation accuracy, test accuracy and seconds."""
    s = bench.splits
    x, y = s.train_x, s.train_y
    if labeled_only:  # the same labeled subset pseudo-label KD keeps, without the rest
        keep = _labeled(labeled_only, len(x))
        x, y = x[keep], y[keep]
    curve: list[float] = []
    torch.manual_seed(seed)
    model = models.build(student, s.input_shape, s.num_classes)
    ctx = TrialContext(x, y, s.val_x, s.val_y, teacher=bench.teacher, seed=seed,
                       teachers=None if labeled_only else bench.outputs, batch_size=bench.config.batch_size,
                       report=lambda step, metrics: curve.append(metrics["distill.val_accuracy"]))
    started = time.perf_counter()
    trained = compressors.Distill(settings).apply(model, ctx)
    seconds = time.perf_counter() - started
    return {"val_curve": curve, "val_accuracy": curve[-1], "test_accuracy": accuracy(trained, s.test_x, s.test_y),
            "seconds": seconds}


def _tune(tune: dict[str, Any], student: dict[str, Any], shared: dict[str, Any], bench: Workbench) -> dict[str, Any]:
    def objective(trial: optuna.Trial) -> float:
        t = trial.suggest_float("temperature", *tune["temperature"], log=True)
        soft = trial.suggest_float("soft_weight", *tune["soft_weight"])
        return train(bench, student, {**shared, "temperature": t, "soft_weight": soft, "hard_weight": 1 - soft},
                     seed=0)["val_accuracy"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=int(tune["trials"]))
    best = study.best_params
    print(f"tuned fixed KD: T={best['temperature']:.2f} soft={best['soft_weight']:.2f} "
          f"(val {study.best_value:.4f}, {len(study.trials)} trials)", file=sys.stderr)
    return {"temperature": best["temperature"], "soft_weight": best["soft_weight"],
            "hard_weight": 1 - best["soft_weight"]}


def summarise(plan: dict[str, Any], runs: list[dict[str, Any]], tuned: dict[str, Any]) -> dict[str, Any]:
    """Per arm: mean ± std test accuracy, epochs to 99 % of the reference arm's final accuracy, training time."""
    arms = list(plan["arms"])
    reference = plan.get("reference")
    target = 0.99 * statistics.mean(r["val_accuracy"] for r in runs if r["arm"] == reference) if reference else None
    rows = []
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        test = [r["test_accuracy"] for r in mine]
        row = {"arm": arm, "test_mean": statistics.mean(test), "test_std": statistics.stdev(test) if len(test) > 1
               else 0.0, "seconds_mean": statistics.mean(r["seconds"] for r in mine)}
        if target is not None:
            reached = [next((i + 1 for i, a in enumerate(r["val_curve"]) if a >= target), None) for r in mine]
            row["epochs_to_target"] = reached
        rows.append(row)
    return {"name": plan["name"], "plan": plan, "tuned": tuned, "target_val_accuracy": target, "rows": rows,
            "runs": runs, "table": table(rows, reference, target, len(runs) // max(1, len(arms)))}


def table(rows: list[dict[str, Any]], reference: str | None, target: float | None, seeds: int) -> str:
    base = next((r for r in rows if r["arm"] == reference), rows[0])
    head = "| arm | test accuracy (mean ± std) | Δ vs " + base["arm"] + " |"
    sep = "|---|---|---|"
    if target is not None:
        head += f" epochs to {target:.4f} val (99 % of {reference}) |"
        sep += "---|"
    head += " training time | time vs " + base["arm"] + " |"
    sep += "---|---|"
    lines = [head, sep]
    for r in rows:
        line = (f"| {r['arm']} | {100 * r['test_mean']:.2f} ± {100 * r['test_std']:.2f} % | "
                f"{100 * (r['test_mean'] - base['test_mean']):+.2f} pt |")
        if target is not None:
            got = [e for e in r["epochs_to_target"] if e is not None]
            mean = f"{statistics.mean(got):.1f}" if got else "never"
            line += f" {mean} ({len(got)}/{len(r['epochs_to_target'])} seeds reach it) |"
        line += f" {r['seconds_mean']:.1f} s | {r['seconds_mean'] / base['seconds_mean']:.2f}x |"
        lines.append(line)
    note = f"{seeds} seeds per arm; times are training only, one thread, side by side in one run."
    return "\n".join(lines) + "\n\n" + note


if __name__ == "__main__":
    sys.exit(main())
