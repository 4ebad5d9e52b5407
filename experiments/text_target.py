"""How close does a text study come to TinyBERT's ratio? Its Pareto members against the teacher, from MLflow.

    squeezer search experiments/text_sentiment.yaml
    python experiments/text_target.py [--tracking-uri sqlite:///mlflow.db] [--study text_sentiment]

For each Pareto member: times smaller (saved bytes), times faster at batch 1 (median latency) and at batch
``measure.batch`` (throughput), and its share of the teacher's accuracy, all on the validation split the teacher and
the students are measured on alike. The target is ≥ 7.5x smaller and ≥ 4x faster at ≥ 97 % of the teacher's
accuracy; the member closest to it is the one whose worst shortfall (as a fraction of each target) is smallest.
Prints a table and writes ``results/<study>_target.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from squeezer.search.results.report import teacher_ratios

HERE = Path(__file__).resolve().parent
TARGET = {"smaller": 7.5, "faster": 4.0, "accuracy_share": 0.97}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--study", default="text_sentiment")
    args = parser.parse_args(argv)
    teacher, members = load(args.tracking_uri, args.study)
    rows = sorted((ratios(teacher, m) for m in members), key=lambda r: -r["accuracy_share"])
    best = min(rows, key=shortfall)
    table = render(teacher, rows, best)
    print(table)
    out = HERE / "results" / f"{args.study}_target"
    out.with_suffix(".json").write_text(json.dumps({"teacher": teacher, "members": rows, "closest": best,
                                                    "target": TARGET}, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    return 0


def load(uri: str, study: str) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The teacher's metrics (from the study's parent run) and the Pareto members' metrics and recipes."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(f"squeezer-{study}")
    if experiment is None:
        raise SystemExit(f"no MLflow experiment squeezer-{study} in {uri}")
    runs = client.search_runs([experiment.experiment_id], f"tags.`squeezer.study` = '{study}'", max_results=5000)
    parent = next(r for r in runs if r.data.tags.get("squeezer.role") == "study")
    teacher = {k.removeprefix("teacher."): v for k, v in parent.data.metrics.items() if k.startswith("teacher.")}
    members = [{"trial": int(r.data.tags["squeezer.trial"]), "metrics": r.data.metrics, "params": r.data.params}
               for r in runs if r.data.tags.get("pareto") == "true"]
    return teacher, members


def ratios(teacher: dict[str, float], member: dict[str, Any]) -> dict[str, Any]:
    m = member["metrics"]
    recipe = {k: v for k, v in member["params"].items() if k.startswith(("student.", "prune.ratio", "quantize.bits",
                                                                         "distill.feature", "distill.attention",
                                                                         "distill.embedding"))}
    r = teacher_ratios(m, teacher)
    return {"trial": member["trial"], "accuracy": m["accuracy"], "size_bytes": m["size_bytes"],
            "latency_ms": m["latency_ms"], "smaller": r["x_smaller"], "faster": r["x_faster"],
            "faster_batch": m["throughput"] / teacher["throughput"],
            "accuracy_share": r["accuracy_share"], "recipe": recipe}


def shortfall(row: dict[str, Any]) -> float:
    """The largest relative shortfall from the target (0 when it is met)."""
    return max(0.0, *(1 - row[k] / v for k, v in TARGET.items()))


def render(teacher: dict[str, float], rows: list[dict[str, Any]], best: dict[str, Any]) -> str:
    lines = ["| trial | accuracy | % of teacher | size | x smaller | latency b1 | x faster b1 | x faster batch "
             "| recipe |", "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        mark = " **closest**" if r is best else ""
        recipe = " ".join(f"{k}={v}" for k, v in sorted(r["recipe"].items()))
        lines.append(f"| {r['trial']}{mark} | {r['accuracy']:.4f} | {100 * r['accuracy_share']:.1f} % | "
                     f"{r['size_bytes'] / 1e6:.2f} MB | {r['smaller']:.1f}x | {r['latency_ms']:.2f} ms | "
                     f"{r['faster']:.1f}x | {r['faster_batch']:.1f}x | {recipe} |")
    lines.append(f"| teacher | {teacher['accuracy']:.4f} | 100 % | {teacher['size_bytes'] / 1e6:.2f} MB | 1x | "
                 f"{teacher['latency_ms']:.2f} ms | 1x | 1x | test accuracy {teacher['test_accuracy']:.4f} |")
    worst = max(TARGET, key=lambda k: 1 - best[k] / TARGET[k])
    verdict = ("meets the target" if shortfall(best) == 0 else
               f"misses it on {worst.replace('_', ' ')}: {best[worst]:.3g} against {TARGET[worst]}")
    return "\n".join(lines) + (f"\n\nTarget: ≥ {TARGET['smaller']}x smaller, ≥ {TARGET['faster']}x faster (batch 1) "
                               f"at ≥ {100 * TARGET['accuracy_share']:.0f} % of the teacher's accuracy (validation "
                               f"split). Closest: trial {best['trial']}, which {verdict}.")


if __name__ == "__main__":
    sys.exit(main())
