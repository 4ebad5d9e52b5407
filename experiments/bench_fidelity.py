"""Are students judged after enough epochs? Squeezer's default early stopping against successive halving over epochs.

    python experiments/bench_fidelity.py     # digits, a table (breast cancer), Fashion-MNIST (10k images); ~40 min

Per data set, four studies of the same space and trials, side by side (same seed; 3 seeds, Fashion-MNIST 1):
  * before   — Squeezer's default until now: screening sampler, Pareto-aware early stopping, the shipped epochs E;
  * halving  — successive halving over epochs (``search.scheduler: halving``), at most the same E epochs;
  * before 3x — the default early stopping with three times the epochs (3E): what more epochs cost without halving;
  * halving 3x — successive halving with three times the epochs as the maximum (3E).
For each (means over the seeds): the trials' total epochs (every epoch any trial trained, stopped ones included), the
most accurate member of the front at least 5x smaller than the teacher (test accuracy, as a share of the teacher's),
and the spread of one recipe over 5 seeds: the first "before" study's member above, re-run at each variant's full
budget (E, 3E) on 5 seeds.
Prints a table, writes JSON and Markdown (``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from squeezer.search.config.experiment import load_config, parse_config
from squeezer.search.runner import run_study
from squeezer.search.trial.recipe import replay_params
from squeezer.search.trial.run import attempt
from squeezer.search.trial.workbench import prepare

HERE = Path(__file__).resolve().parent
DATASETS = ("digits", "table", "fashion_mnist")
TRIALS = {"digits": 20, "table": 20, "fashion_mnist": 10}
VARIANTS = {"before": ("pareto", 1), "halving": ("halving", 1), "before 3x": ("pareto", 3),
            "halving 3x": ("halving", 3)}
SMALLER = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, default=5, help="runs of the one recipe whose spread is reported")
    parser.add_argument("--study-seeds", type=int, default=3, help="studies per variant (Fashion-MNIST: 1)")
    parser.add_argument("--trials", type=int, help="trials per study (default: 20; Fashion-MNIST 10)")
    parser.add_argument("--train-size", type=int, default=10_000, help="fashion_mnist: training images")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {list(VARIANTS)}")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_fidelity.json")
    args = parser.parse_args(argv)
    variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    studies, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            raw = base(dataset, Path(tmp), args.train_size)
            recipe, spreads = None, {}
            for seed in range(1 if dataset == "fashion_mnist" else args.study_seeds):
                for variant, (scheduler, times) in variants.items():  # side by side: seed by seed
                    cfg = variant_config({**raw, "seed": seed}, scheduler, times)
                    found = study_row(cfg, args.trials or TRIALS[dataset], Path(tmp),
                                      f"{dataset}-{variant}-{seed}".replace(" ", ""))
                    recipe = recipe or found.pop("recipe")  # the first "before" study's best small member
                    found.pop("recipe", None)
                    studies.append({"dataset": dataset, "variant": variant, "seed": seed, **found})
                    print(json.dumps(studies[-1]), file=sys.stderr, flush=True)
            for variant, (scheduler, times) in variants.items():
                mine = [r for r in studies if r["dataset"] == dataset and r["variant"] == variant]
                cfg = variant_config(raw, scheduler, times)
                if recipe and times not in spreads:  # the recipe at a budget: the same runs whatever the scheduler
                    spreads[times] = spread(cfg, recipe, args.seeds, Path(tmp))
                rows.append({"dataset": dataset, "variant": variant, **summary(mine), **spreads.get(times, {})})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    table = render(rows)
    print(table)
    args.out.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                    "studies": studies, "table": table}, indent=2))
    args.out.with_suffix(".md").write_text(table + "\n")
    return 0


def summary(studies: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over a variant's studies (one per seed); the best small member's share as mean and std."""
    shares = [r["best_small_share"] for r in studies if r["best_small_share"] is not None]
    return {"studies": len(studies), "max_epochs": studies[0]["max_epochs"],
            "trials": statistics.mean(r["trials"] for r in studies),
            "stopped": statistics.mean(r["stopped"] for r in studies),
            "total_epochs": statistics.mean(r["total_epochs"] for r in studies),
            "minutes": statistics.mean(r["minutes"] for r in studies),
            "front": statistics.mean(r["front"] for r in studies),
            "small_found": len(shares),
            "small_share": statistics.mean(shares) if shares else None,
            "small_share_std": statistics.stdev(shares) if len(shares) > 1 else None,
            "small_x": statistics.mean(r["best_small_x"] for r in studies if r["best_small_x"] is not None)
            if shares else None}


def base(dataset: str, tmp: Path, train_size: int) -> dict[str, Any]:
    """The raw config of a data set's study: the shipped digits and Fashion-MNIST studies (on ``train_size``
    images), and the digits study's space on scikit-learn's breast cancer table written as a CSV file."""
    if dataset == "fashion_mnist":
        raw = load_config(HERE / "fashion_mnist.yaml").raw
        return {**raw, "data": {**raw["data"], "train_size": train_size}}
    raw = dict(load_config(HERE / "digits.yaml").raw)
    if dataset == "table":
        from sklearn.datasets import load_breast_cancer

        frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "label"})
        path = tmp / "breast_cancer.csv"
        frame.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
        raw = {**raw, "name": "breast_cancer", "data": {"path": str(path), "label_column": "label",
                                                        "val_fraction": 0.2, "test_fraction": 0.2}}
    return raw


def variant_config(raw: dict[str, Any], scheduler: str, times: int) -> Any:
    """``raw`` with Squeezer's default sampler, ``scheduler``, and every training step's epochs times ``times``."""
    pipeline = []
    for step in raw["pipeline"]:
        (name, settings), = step.items()
        settings = dict(settings)
        for key in ("epochs", "finetune_epochs"):
            if isinstance(settings.get(key), int):
                settings[key] *= times
        pipeline.append({name: settings})
    search = {"sampler": "squeezer", "scheduler": scheduler}
    return parse_config({**raw, "pipeline": pipeline, "search": search}, base_dir=HERE)


def budget(cfg: Any) -> int:
    """The epochs a trial trains at most: every training step's, fixed in the space."""
    return sum(getattr(step.space.get(key), "value", 0) for step in cfg.pipeline
               for key in ("epochs", "finetune_epochs"))


def study_row(cfg: Any, trials: int, tmp: Path, name: str) -> dict[str, Any]:
    """One study: its trials' total epochs, its wall time, and its most accurate front member >= 5x smaller."""
    result = run_study(cfg, trials=trials, study_name=name, storage=f"sqlite:///{tmp}/optuna.db",
                       tracking_uri=f"sqlite:///{tmp}/mlflow.db", out=lambda line: None)
    study = result.study
    teacher = study.user_attrs["teacher"]
    tested = {int(k): v for k, v in study.user_attrs.get("test_accuracy", {}).items()}
    spent = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    small = [t for t in result.front if teacher["size_bytes"] / t.user_attrs["metrics"]["size_bytes"] >= SMALLER]
    best = max(small, key=lambda t: t.user_attrs["metrics"]["accuracy"], default=None)
    seconds = max(t.datetime_complete for t in spent) - min(t.datetime_start for t in spent)
    return {"max_epochs": budget(cfg), "trials": len(spent),
            "stopped": sum(t.state == TrialState.PRUNED for t in spent),
            "total_epochs": sum(len(t.user_attrs.get("val_curve", ())) for t in spent),
            "minutes": seconds.total_seconds() / 60, "front": len(result.front),
            "teacher_test": teacher["test_accuracy"],
            "best_small_trial": None if best is None else best.number,
            "best_small_x": None if best is None else teacher["size_bytes"] / best.user_attrs["metrics"]["size_bytes"],
            "best_small_test": None if best is None else tested.get(best.number),
            "best_small_share": None if best is None or best.number not in tested else
            tested[best.number] / teacher["test_accuracy"],
            "recipe": None if best is None else dict(best.params)}


def spread(cfg: Any, recipe: dict[str, Any], seeds: int, tmp: Path) -> dict[str, Any]:
    """The test accuracy of ``recipe`` trained to ``cfg``'s full budget on ``seeds`` seeds: mean, std, range."""
    bench = prepare(cfg)
    params = replay_params(cfg, recipe)
    found = []
    for seed in range(seeds):
        workdir = tmp / f"spread-{seed}"
        workdir.mkdir(exist_ok=True)
        outcome = attempt(bench, params, 1000 + seed, workdir)
        if outcome.metrics is not None:
            found.append(bench.test_quality(workdir))
    return {"recipe_runs": len(found), "recipe_mean": statistics.mean(found) if found else None,
            "recipe_std": statistics.stdev(found) if len(found) > 1 else None,
            "recipe_range": [min(found), max(found)] if found else None}


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| data set | variant | max epochs | studies | trials (stopped) | total epochs | minutes | front | "
             "most accurate member ≥5x smaller: test accuracy as a share of the teacher's (x smaller) | one recipe, "
             "5 seeds: test accuracy mean ± std [min–max] |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        best = "none" if r["small_share"] is None else \
            (f"{100 * r['small_share']:.1f} % ± {100 * (r['small_share_std'] or 0):.1f} ({r['small_x']:.0f}x; "
             f"{r['small_found']} of {r['studies']})")
        runs = "—" if r.get("recipe_mean") is None else \
            (f"{r['recipe_mean']:.4f} ± {r['recipe_std'] or 0:.4f} [{r['recipe_range'][0]:.4f}–"
             f"{r['recipe_range'][1]:.4f}]")
        lines.append(f"| {r['dataset']} | {r['variant']} | {r['max_epochs']} | {r['studies']} | {r['trials']:.0f} "
                     f"({r['stopped']:.1f}) | {r['total_epochs']:.0f} | {r['minutes']:.1f} | {r['front']:.1f} | "
                     f"{best} | {runs} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
