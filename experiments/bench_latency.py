"""Latency you can rank by: the plain median against timing each model beside the study's teacher.

    python experiments/bench_latency.py [--students 10] [--load 2]

Ten students of different sizes (2-layer MLPs on digits, 8 to 256 wide: up to their teacher's size; ``--widths``)
are deployed in ONNX Runtime and measured in two passes, as a study measures trials: the first pass on the machine
as it is, the second beside ``--load`` processes spinning on matrix products (another user, other trials). Each pass
measures every student by both methods, one right after the other (which goes first alternates):

- old: the median of ``measure.repeats`` batch-1 runs (what ``latency_ms`` was; ``latency_raw_ms`` now);
- new: the median over the same number of rounds of the student's time over the teacher's, the two run alternately,
  times the teacher's latency when the study started (what ``latency_ms`` is now).

For each method: the spread of one student across the two passes (max/min; median and worst over students), and
Kendall's tau between the two passes' rankings. Targets: spread <= 1.15x and tau >= 0.9 with the new method. Prints a
table and writes JSON and Markdown (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from scipy.stats import kendalltau

from squeezer.search.config.experiment import load_config
from squeezer.search.trial.metrics import deployed_for_timing, timed_ms
from squeezer.search.models import build
from squeezer.search.trial.workbench import Given, prepare

from neighbours import busy  # experiments/neighbours.py, beside this script

EXPERIMENT = Path(__file__).with_name("digits.yaml")


def widths(count: int, low: int, high: int) -> list[int]:
    return sorted({round(low * (high / low) ** (i / max(1, count - 1))) for i in range(count)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--load", type=int, default=2, help="CPU-heavy processes beside the second pass")
    parser.add_argument("--widths", type=int, nargs=2, default=(8, 256), metavar=("LOW", "HIGH"),
                        help="the students' widths, spaced evenly in log (default: 8 to the teacher's 256: students "
                        "are smaller than their teacher)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_latency"))
    args = parser.parse_args()

    config = load_config(EXPERIMENT)
    settings = config.measure
    bench = prepare(config, Given())
    s = bench.splits
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    teacher, timed = deployed_for_timing(bench.teacher, s.val_raw, settings, work / "teacher", s.pad_id, s.spec)
    one = timed[:1]
    base = timed_ms(teacher, one, settings).ms  # the teacher when the study starts
    students = {}
    for width in widths(args.students, *args.widths):
        torch.manual_seed(0)
        model = build({"family": "mlp", "depth": 2, "width": width}, s.input_shape, s.num_classes).eval()
        students[width] = deployed_for_timing(model, s.val_raw, settings, work / f"w{width}", s.pad_id, s.spec)[0]

    readings: dict[str, dict[int, list[float]]] = {"old": {w: [] for w in students}, "new": {w: [] for w in students}}
    for number, load in enumerate((0, args.load)):
        with busy(load):
            for i, (width, deployed) in enumerate(students.items()):
                for method in (("old", "new") if (i + number) % 2 == 0 else ("new", "old")):
                    against = (teacher, base) if method == "new" else None  # old: the plain median
                    readings[method][width].append(timed_ms(deployed, one, settings, against).ms)
        print(f"pass {number + 1} done ({load} busy neighbours)", flush=True)

    rows = []
    for method, by_width in readings.items():
        spreads = [max(v) / min(v) for v in by_width.values()]
        tau = kendalltau([v[0] for v in by_width.values()], [v[1] for v in by_width.values()]).statistic
        rows.append({"method": method, "median_spread": round(statistics.median(spreads), 3),
                     "worst_spread": round(max(spreads), 3), "kendall_tau": round(float(tau), 3),
                     "readings_ms": {str(w): [round(x, 4) for x in v] for w, v in by_width.items()}})
    names = {"old": "old: plain median", "new": "new: ratio to the teacher, timed alternately"}
    header = "| method | median spread | worst spread | Kendall tau |\n|---|---:|---:|---:|"
    lines = [f"| {names[r['method']]} | {r['median_spread']}x | {r['worst_spread']}x | {r['kendall_tau']} |"
             for r in rows]
    detail = ["| width | " + " | ".join(f"{m} pass 1 | {m} pass 2" for m in readings) + " |",
              "|---:|" + "---:|" * (2 * len(readings))]
    for width in students:
        detail.append(f"| {width} | " + " | ".join(f"{readings[m][width][0]:.4f} | {readings[m][width][1]:.4f}"
                                                   for m in readings) + " |")
    table = "\n".join([header, *lines])
    print(f"\nteacher {base:.4f} ms; students: MLPs 2 x {list(students)} on digits; second pass beside "
          f"{args.load} busy processes\n{table}\n\n" + "\n".join(detail))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"teacher_ms": base, "load": args.load, "widths": list(students),
                                                    "repeats": settings.repeats, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(f"`python experiments/bench_latency.py --students {args.students} --load "
                                      f"{args.load} --widths {args.widths[0]} {args.widths[1]}` (ms, batch 1, ONNX "
                                      f"Runtime, 1 thread; teacher {base:.4f} ms)\n\n{table}\n\n"
                                      + "\n".join(detail) + "\n")


if __name__ == "__main__":
    main()
