"""Which compressions reach the Pareto front of a study measured in ONNX Runtime? Its members, from MLflow.

    squeezer search experiments/fashion_mnist_ort.yaml
    python experiments/ort_front.py [--tracking-uri sqlite:///mlflow.db] [--study fashion_mnist_ort]

For each Pareto member: accuracy, bytes of its model.onnx and ONNX Runtime latency, as ratios to the teacher
measured the same way; its bit-width (and the layers kept higher), pruning, and whether low rank factorised any
layer (read from the member's architecture.json, not from the sampled ratio: a rank too high to save weights leaves
the layer whole). Prints a table and writes ``results/<study>_front.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from text_target import load  # the same MLflow reading: teacher metrics and Pareto members

from squeezer.search.results.report import teacher_ratios

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--study", default="fashion_mnist_ort")
    args = parser.parse_args(argv)
    teacher, members = load(args.tracking_uri, args.study)
    factorised = factorised_layers(args.tracking_uri, args.study)
    rows = sorted((describe(teacher, m, factorised[m["trial"]]) for m in members), key=lambda r: -r["accuracy"])
    checked = [describe(teacher, b, []) | {"baseline": b["params"]["baseline.recipe"],
                                           "held_by": dominated_by(b, members)}
               for b in baselines(args.tracking_uri, args.study)]
    table = render(teacher, rows) + render_baselines(checked)
    print(table)
    out = HERE / "results" / f"{args.study}_front"
    out.with_suffix(".json").write_text(json.dumps({"teacher": teacher, "members": rows, "baselines": checked},
                                                   indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    return 0


def factorised_layers(uri: str, study: str) -> dict[int, list[str]]:
    """Per Pareto trial, the layers low rank split in two (``Sequential`` in its architecture.json)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(f"squeezer-{study}")
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.`squeezer.study` = '{study}' and tags.pareto = 'true'", max_results=5000)
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            path = client.download_artifacts(run.info.run_id, "architecture.json", tmp)
            layers = json.loads(Path(path).read_text())["layers"]
            found[int(run.data.tags["squeezer.trial"])] = [n for n, s in layers.items() if s.get("kind") == "Sequential"
                                                           and n in _children_parents(layers)]
    return found


def baselines(uri: str, study: str) -> list[dict[str, Any]]:
    """The study's baseline trials (the teacher quantized without training, ``squeezer.search.trial.baselines``)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(f"squeezer-{study}")
    runs = client.search_runs([experiment.experiment_id], f"tags.`squeezer.study` = '{study}' and "
                              "params.`baseline.recipe` != ''", max_results=100)
    return [{"trial": int(r.data.tags["squeezer.trial"]), "metrics": r.data.metrics, "params": r.data.params}
            for r in runs if r.info.status == "FINISHED"]


def dominated_by(baseline: dict[str, Any], members: list[dict[str, Any]]) -> list[int]:
    """The Pareto members at least as good as ``baseline`` in accuracy, size and latency (itself, if it is one)."""
    b = baseline["metrics"]
    return sorted(m["trial"] for m in members if m["metrics"]["accuracy"] >= b["accuracy"]
                  and m["metrics"]["size_bytes"] <= b["size_bytes"] and m["metrics"]["latency_ms"] <= b["latency_ms"])


def render_baselines(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = ["", "", "The obvious baseline, the teacher quantized without training (run first):", "",
             "| trial | baseline | accuracy | % of teacher | model.onnx | x smaller | latency b1 | x faster "
             "| on the front, or dominated by |", "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: r["trial"]):
        held = ("on the front" if r["trial"] in r["held_by"] else
                "dominated by trial(s) " + ", ".join(map(str, r["held_by"])) if r["held_by"] else "NOT held")
        lines.append(f"| {r['trial']} | {r['baseline']} | {r['accuracy']:.4f} | {100 * r['accuracy_share']:.1f} % | "
                     f"{r['size_bytes'] / 1e3:.1f} KB | {r['smaller']:.1f}x | {r['latency_ms']:.3f} ms | "
                     f"{r['faster']:.1f}x | {held} |")
    return "\n".join(lines)


def _children_parents(layers: dict[str, Any]) -> set[str]:
    return {name.rpartition(".")[0] for name, spec in layers.items() if spec.get("kind") == "Linear"}


def describe(teacher: dict[str, float], member: dict[str, Any], factorised: list[str]) -> dict[str, Any]:
    m, p = member["metrics"], member["params"]
    bits = int(p.get("quantize.bits", 32))
    ends = int(p.get("quantize.ends_bits", 8))
    r = teacher_ratios(m, teacher)
    return {"trial": member["trial"], "accuracy": m["accuracy"], "size_bytes": m["size_bytes"],
            "latency_ms": m["latency_ms"], "smaller": r["x_smaller"], "faster": r["x_faster"],
            "accuracy_share": r["accuracy_share"],
            "student": " ".join(f"{k.removeprefix('student.')}={v}" for k, v in sorted(p.items())
                                if k.startswith("student.")),
            "bits": bits, "ends_bits": ends if bits < ends else None,
            "prune": (f"{p['prune.keep_layers']} layers kept, " if p.get("prune.keep_layers") not in (None, "None")
                      else "") + f"{float(p.get('prune.ratio', 0)):.2f} "
                     f"{'structured' if p.get('prune.structured', 'True') == 'True' else 'unstructured'} "
                     f"{p.get('prune.importance', 'magnitude')}",
            "rank_ratio": float(p.get("lowrank.rank_ratio", 1.0)), "factorised": factorised}


def render(teacher: dict[str, float], rows: list[dict[str, Any]]) -> str:
    lines = ["| trial | accuracy | % of teacher | model.onnx | x smaller | latency b1 | x faster | bits | pruning "
             "| low rank | student |", "|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|"]
    for r in rows:
        bits = {32: "fp32", 16: "fp16", 8: "int8", 4: "int4", 2: "ternary"}[r["bits"]]
        if r["ends_bits"]:
            bits += f" (ends {r['ends_bits']})"
        rank = (f"{r['rank_ratio']:.2f}: {len(r['factorised'])} layer(s)" if r["factorised"] else "none")
        lines.append(f"| {r['trial']} | {r['accuracy']:.4f} | {100 * r['accuracy_share']:.1f} % | "
                     f"{r['size_bytes'] / 1e3:.1f} KB | {r['smaller']:.0f}x | {r['latency_ms']:.3f} ms | "
                     f"{r['faster']:.1f}x | {bits} | {r['prune']} | {rank} | {r['student']} |")
    quantized = sum(r["bits"] < 32 for r in rows)
    low_rank = sum(bool(r["factorised"]) for r in rows)
    lines.append(f"| teacher | {teacher['accuracy']:.4f} | 100 % | {teacher['size_bytes'] / 1e3:.1f} KB | 1x | "
                 f"{teacher['latency_ms']:.3f} ms | 1x | fp32 | | | test accuracy {teacher['test_accuracy']:.4f} |")
    return "\n".join(lines) + (f"\n\n{len(rows)} Pareto members: {quantized} quantized (fp16 or fewer bits), "
                               f"{low_rank} with low-rank factorised layers. Sizes are model.onnx files, latencies "
                               "ONNX Runtime, one thread, batch 1, validation split.")


if __name__ == "__main__":
    sys.exit(main())
