"""What each compression format does to bytes, FLOPs and latency, in ONNX Runtime and in eager PyTorch.

    python experiments/bench_compression.py          # Fashion-MNIST; an MLP and a CNN student; ~10 minutes

Each student is trained briefly on the labels, then compressed nine ways (fp32, fp16, int8 dynamic, int8 static,
int4, ternary, 50 % structured pruning, 90 % unstructured pruning, rank ½), and every artifact is deployed and
measured by the code trials use (``squeezer.search.trial.metrics.measure``): bytes of the saved file, non-zero params,
FLOPs, test accuracy, and batch-1 / batch-64 latency (median of --repeats after warm-up, one thread). Ratios are to
fp32 in the same runtime, measured in the same run. Prints a table and writes JSON and Markdown (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from squeezer import compressors
from squeezer.compressors.base import TrialContext
from squeezer.compressors.training import Optim, fit, hard_labels
from squeezer.search import data, models
from squeezer.search.config.data_section import data_section
from squeezer.search.config.experiment import MeasureSettings
from squeezer.search.trial.metrics import latency_ms, measure
from squeezer.search.runtime import deploy

HERE = Path(__file__).resolve().parent
STUDENTS = {"MLP 784-512-512-10 (Linear-heavy)": {"family": "mlp", "depth": 2, "width": 512},
            "CNN c16-c32-fc128": {"family": "cnn", "depth": 2, "channels": 16, "kernel": 3, "hidden": 128}}
FORMATS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "fp32": [],
    "fp16": [("quantize", {"bits": 16, "half": "fp16"})],
    "int8 dynamic": [("quantize", {"bits": 8, "int8_mode": "dynamic"})],
    "int8 static": [("quantize", {"bits": 8, "int8_mode": "static"})],
    "int4 (g32)": [("quantize", {"bits": 4, "ends_bits": 4, "group_size": 32})],
    "int4 (g128)": [("quantize", {"bits": 4, "ends_bits": 4, "group_size": 128})],
    "int4 (g32), ends int8": [("quantize", {"bits": 4, "group_size": 32})],
    "ternary (g32)": [("quantize", {"bits": 2, "ends_bits": 2, "group_size": 32})],
    "50 % structured": [("prune", {"ratio": 0.5, "structured": True, "finetune_epochs": 1})],
    "90 % unstructured": [("prune", {"ratio": 0.9, "structured": False, "finetune_epochs": 1})],
    "rank ½": [("lowrank", {"rank_ratio": 0.5, "finetune_epochs": 1})],
}
RUNTIMES = ("onnxruntime", "torch")
TORCH_BITS = (32, 16, 8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved latency rounds over all artifacts")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_compression.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    splits = data.load(data_section({"name": "fashion_mnist", "val_fraction": 0.1, "train_size": args.train_size},
                                       Path(".")), seed=0)
    settings = MeasureSettings(threads=1, warmup=20, repeats=args.repeats, batch=64)
    rows, artifacts = [], []
    workdir = tempfile.TemporaryDirectory()
    for student, arch in STUDENTS.items():
        ctx = TrialContext(splits.train_x, splits.train_y, splits.val_x, splits.val_y, seed=0, batch_size=128)
        torch.manual_seed(0)
        model = models.build(arch, splits.input_shape, splits.num_classes)
        fit(model, ctx, hard_labels(model, ctx), Optim(args.epochs, 2e-3), stage="train")
        for fmt, steps in FORMATS.items():
            compressed = model
            for name, config in steps:
                compressed = compressors.get(name)(config).apply(compressed, ctx)
            for runtime in RUNTIMES:
                bits = dict(steps).get("quantize", {}).get("bits", 32)
                if runtime == "torch" and bits not in TORCH_BITS:
                    rows.append({"student": student, "format": fmt, "runtime": runtime, "metrics": None})
                    continue
                folder = Path(workdir.name) / str(len(rows))
                metrics = measure(compressed, splits.test_x, splits.test_y,
                                  MeasureSettings(**{**vars(settings), "runtime": runtime}), folder)
                rows.append({"student": student, "format": fmt, "runtime": runtime, "metrics": metrics})
                artifacts.append((rows[-1], deploy(compressed, runtime, folder / "again", splits.test_x[:1])))
                print(f"{student} | {fmt} | {runtime}: {_short(metrics)}", file=sys.stderr)
    interleaved_latency(artifacts, splits.test_x[:64], settings, args.rounds)
    add_ratios(rows)
    overhead = call_overhead(splits.test_x[:64], settings)
    table = render(rows, args) + (f"\n\nONNX Runtime's fixed cost per call (a graph that only flattens its input): "
                                  f"{overhead[0]:.4f} ms at batch 1, {overhead[1]:.4f} ms at batch 64.")
    print(table)
    args.out.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out)}, "rows": rows, "table": table,
                                    "call_overhead_ms": overhead}, indent=2))
    args.out.with_suffix(".md").write_text(table + "\n")
    return 0


def interleaved_latency(artifacts: list[tuple[dict[str, Any], Any]], x: torch.Tensor, settings: MeasureSettings,
                        rounds: int) -> None:
    """Replace each row's latencies by the median over ``rounds`` rounds, each round timing every artifact in turn:
    a burst of load on the machine then falls on all formats alike instead of on whichever was being measured."""
    per_row: list[dict[str, list[float]]] = [{} for _ in artifacts]
    for _ in range(rounds):
        for (_, deployed), kept in zip(artifacts, per_row, strict=True):
            for batch, key in ((x[:1], "latency_ms"), (x, "latency_batch_ms")):
                times = latency_ms(deployed, batch, settings)
                kept.setdefault(key, []).append(statistics.median(times))
                kept.setdefault(key.replace("_ms", "_p90_ms"), []).append(statistics.quantiles(times, n=10)[-1])
    for (row, _), kept in zip(artifacts, per_row, strict=True):
        row["metrics"].update({k: statistics.median(v) for k, v in kept.items()})
        row["metrics"]["throughput"] = len(x) / (row["metrics"]["latency_batch_ms"] / 1e3)
        row["latency_rounds_ms"] = kept["latency_ms"]


def call_overhead(x: torch.Tensor, settings: MeasureSettings) -> tuple[float, float]:
    """Median latency of a session whose graph only flattens: the floor under every ONNX Runtime latency."""
    with tempfile.TemporaryDirectory() as tmp:
        empty = deploy(torch.nn.Flatten(), "onnxruntime", Path(tmp), x[:1])
        return statistics.median(latency_ms(empty, x[:1], settings)), statistics.median(latency_ms(empty, x, settings))


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each measured row's bytes and latencies as a ratio to fp32 of the same student in the same runtime."""
    base = {(r["student"], r["runtime"]): r["metrics"] for r in rows if r["format"] == "fp32"}
    for r in rows:
        if r["metrics"]:
            ref = base[(r["student"], r["runtime"])]
            r["ratios"] = {k: r["metrics"][k] / ref[k] for k in ("size_bytes", "latency_ms", "latency_batch_ms")}


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = []
    for student in STUDENTS:
        lines += [f"**{student}**", "",
                  "| format | runtime | test acc | bytes | x fp32 | params | MFLOPs | b1 ms (p90) | x fp32 "
                  "| b64 ms (p90) | x fp32 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if r["student"] == student):
            if not r["metrics"]:
                lines.append(f"| {r['format']} | {r['runtime']} | n/a: the torch runtime runs 32/16/8 bits "
                             "| | | | | | | | |")
                continue
            m, q = r["metrics"], r["ratios"]
            lines.append(f"| {r['format']} | {r['runtime']} | {m['accuracy']:.4f} | {m['size_bytes'] / 1e3:,.1f} KB "
                         f"| {q['size_bytes']:.3f} | {m['params']:,.0f} | {m['flops'] / 1e6:.2f} "
                         f"| {m['latency_ms']:.4f} ({m['latency_p90_ms']:.4f}) | {q['latency_ms']:.2f} "
                         f"| {m['latency_batch_ms']:.3f} ({m['latency_batch_p90_ms']:.3f}) | "
                         f"{q['latency_batch_ms']:.2f} |")
        lines.append("")
    return "\n".join(lines) + (
        f"Fashion-MNIST: students trained {args.epochs} epochs on {args.train_size} images; accuracy on the 10k "
        f"test images. Latency: median (p90) of {args.repeats} runs after 20 warm-up runs, one thread, batch 1 and "
        f"64, the median over {args.rounds} rounds that time every artifact in turn; ratios to fp32 in the same "
        "runtime, all measured in one run. Bytes: the deployed file (model.onnx, or "
        "the torch state dict model.pt).")


def _short(m: dict[str, float]) -> str:
    return (f"acc {m['accuracy']:.4f} {m['size_bytes'] / 1e3:.1f} KB b1 {m['latency_ms']:.4f} ms "
            f"b64 {m['latency_batch_ms']:.3f} ms")


if __name__ == "__main__":
    sys.exit(main())
