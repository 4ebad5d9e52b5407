"""Studies on a GPU machine's CPU cores against its GPU, one trial at a time and many at once.

    python experiments/bench_gpu.py                              # the demo (fashion_mnist.yaml), 30 trials a row
    python experiments/bench_gpu.py --trials 8 --config digits.yaml --rows cpu:1,cpu:8   # a quick run on a CPU
    python experiments/bench_gpu.py --text --text-rows 2000      # also the text study (MiniLM teacher)

Each row is a fresh study (temporary stores) in a fresh process, timed by ``bench_overhead.py``'s phase clock:
``prepare`` is the teacher's training (or fine-tuning) and its output pass, from an empty teacher cache; ``search``
is the trial loop's wall time (the workers of ``--jobs`` run inside it); ``overhead`` is the share of the study
process's trial loop spent outside student training (screening, measuring, storage, tracking). Rows run side by side
in one invocation on the same machine. Prints a Markdown table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OVERHEAD = HERE / "bench_overhead.py"


def row(config: Path, device: str, jobs: int, trials: int, extra: dict[str, Any]) -> dict[str, Any]:
    """One study on ``device`` with ``jobs`` trials at once, from an empty teacher cache."""
    overrides = {"training.device": device, "search.jobs": jobs, **extra}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as cache, \
            tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, "SQUEEZER_CACHE": cache, "SQUEEZER_PROGRESS": "plain"}
        subprocess.run([sys.executable, str(OVERHEAD), "--inner", str(config), json.dumps(overrides), str(trials),
                        "sqlite", out.name], check=True, env=env, stdout=subprocess.DEVNULL)
        result = json.loads(Path(out.name).read_text())
    phases = result["phases_s"]
    search = result["run_study_s"] - phases["prepare"] - phases["stores set-up"]
    return {"config": config.name, "device": device, "jobs": jobs, "trials": trials, "prepare_s": phases["prepare"],
            "search_s": search, "trials_per_hour": 3600 * trials / search, "wall_s": result["wall_s"],
            "overhead": result["per_trial_overhead"], "phases_s": phases}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| study | trains on | trials at once | trials | teacher + outputs (s) | search (s) | trials/hour | "
             "per-trial overhead |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['device']} | {r['jobs']} | {r['trials']} | {r['prepare_s']:.1f} | "
                     f"{r['search_s']:.1f} | {r['trials_per_hour']:.0f} | {100 * r['overhead']:.1f} % |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="fashion_mnist.yaml", help="an experiment under experiments/")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--rows", default="cpu:1,cpu:8,cuda:1,cuda:8", help="DEVICE:JOBS, comma-separated")
    parser.add_argument("--text", action="store_true", help="also the text study (text_sentiment.yaml)")
    parser.add_argument("--text-trials", type=int, default=8)
    parser.add_argument("--text-rows", type=int, default=None, help="training texts (data.train_size) of the text "
                        "study (default: all; its CPU fine-tune takes about 40 min on 2 cores)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="on the GPU")
    parser.add_argument("--out", default="bench_gpu.json")
    args = parser.parse_args()
    rows = []
    for spec in args.rows.split(","):
        device, jobs = spec.split(":")
        extra = {"training.precision": args.precision} if device != "cpu" else {}
        rows.append(row(HERE / args.config, device, int(jobs), args.trials, extra))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    if args.text:
        extra = {"data.train_size": args.text_rows} if args.text_rows else {}
        for device in ("cpu", "cuda"):
            precision = {"training.precision": args.precision} if device != "cpu" else {}
            rows.append(row(HERE / "text_sentiment.yaml", device, 1, args.text_trials, {**extra, **precision}))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    Path(args.out).write_text(json.dumps({"rows": rows, "python": sys.version.split()[0]}, indent=2))


if __name__ == "__main__":
    main()
