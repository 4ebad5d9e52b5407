"""Does a bigger teacher make trials slower? Trial time with the demo's teacher and one ~10x larger, side by side.

    python experiments/bench_teacher.py            # Fashion-MNIST, 10k training images, 3 trials per cell

Teacher outputs (logits, and the features a method uses) are computed once per teacher and data and cached on disk,
so a trial never runs the teacher: the target is trial time with the 10x teacher <= 1.1x the default's. For contrast
the table also shows what the teacher's passes cost: the one-off computation of its outputs, and what running the
teacher in every epoch would add to each trial. Prints a table and writes JSON (``--out``).
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

import torch

from squeezer.compressors.training import predict
from squeezer.search.config.experiment import load_config, parse_config
from squeezer.search.trial.workbench import Workbench, prepare
from squeezer.search.trial.run import run_trial

HERE = Path(__file__).resolve().parent
TEACHERS = {"default (demo)": {"depth": 2, "channels": 32, "kernel": 3, "hidden": 128},
            "10x larger": {"depth": 2, "channels": 96, "kernel": 3, "hidden": 448}}
TRIALS = {"logit KD": {},
          "logit KD + features": {"feature_weight": 1.0}}
STUDENT = {"family": "cnn", "depth": 2, "channels": 4, "kernel": 3, "hidden": 32}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_teacher.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    benches = {name: prepared(arch, args) for name, arch in TEACHERS.items()}
    times = interleaved(benches, args)
    rows = [describe(name, benches[name], times[name], args) for name in TEACHERS]
    base = rows[0]
    for row in rows:
        row["params_ratio"] = row["teacher_params"] / base["teacher_params"]
        row["trial_ratio"] = {k: row["trial_s"][k] / base["trial_s"][k] for k in TRIALS}
    table = render(rows, args)
    print(table)
    args.out.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out)}, "rows": rows,
                                    "table": table}, indent=2))
    args.out.with_suffix(".md").write_text(table + "\n")
    return 0


def prepared(arch: dict[str, Any], args: argparse.Namespace) -> Workbench:
    """The demo's study with this teacher (trained for one epoch, cached), its logits computed or loaded."""
    base = load_config(HERE / "fashion_mnist.yaml").raw
    raw = {**base, "data": {**base["data"], "train_size": args.train_size},
           "teacher": {**base["teacher"], "arch": arch, "epochs": 1}}
    return prepare(parse_config(raw, base_dir=HERE))


def interleaved(benches: dict[str, Workbench], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Median trial seconds per teacher and method; the teachers alternate within each repeat, so drift in the
    machine's load falls on both alike. A first, untimed trial per cell computes (or loads) the features."""
    samples: dict[str, dict[str, list[float]]] = {n: {k: [] for k in TRIALS} for n in benches}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(-1, args.repeats):
            for label, distill in TRIALS.items():
                params = {"student": STUDENT, "distill": {"epochs": args.epochs, **distill}}
                for name, bench in benches.items():
                    took = _seconds(lambda b=bench, p=params, s=seed: run_trial(b, p, max(0, s), Path(tmp)))
                    if seed >= 0:
                        samples[name][label].append(took)
    return {n: {k: statistics.median(v) for k, v in per.items()} for n, per in samples.items()}


def describe(name: str, bench: Workbench, trial_s: dict[str, float], args: argparse.Namespace) -> dict[str, Any]:
    pass_s = _seconds(lambda: predict(bench.teacher, bench.splits.train_x))  # one full teacher pass
    params = sum(p.numel() for p in bench.teacher.parameters())
    return {"teacher": name, "arch": TEACHERS[name], "teacher_params": params, "teacher_pass_s": pass_s,
            "trial_s": trial_s, "online_teacher_s": pass_s * args.epochs}


def _seconds(fn) -> float:  # noqa: ANN001
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = ["| teacher | params | one teacher pass over the training split | "
             + " | ".join(f"trial: {k} (ratio)" for k in TRIALS)
             + " | a teacher pass in every epoch would add per trial |",
             "|---|---|---|" + "---|" * len(TRIALS) + "---|"]
    for r in rows:
        cells = " | ".join(f"{r['trial_s'][k]:.2f} s ({r['trial_ratio'][k]:.2f}x)" for k in TRIALS)
        lines.append(f"| {r['teacher']} | {r['teacher_params'] / 1e6:.2f} M ({r['params_ratio']:.1f}x) | "
                     f"{r['teacher_pass_s']:.2f} s | {cells} | {r['online_teacher_s']:.1f} s |")
    return "\n".join(lines) + (f"\n\nFashion-MNIST, {args.train_size} training images, CNN student, {args.epochs} "
                               f"epochs per trial, median of {args.repeats} trials, one thread; trial time includes "
                               "measuring.")


if __name__ == "__main__":
    sys.exit(main())
