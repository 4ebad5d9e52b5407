"""How torch's thread count changes a trial's time on this machine, idle and beside a CPU-heavy process.

    python experiments/bench_threads.py [--repeats 3] [--train-size 12000]

One fixed Fashion-MNIST recipe (a CNN student distilled from the demo's teacher, pruned and quantized; the training
split cut to ``--train-size`` images) runs as one trial under each setup: torch threads = 1, or = the cores (torch's
default, what every trial used before ``training.threads``), with the machine idle or with ``--load`` processes
spinning on matrix products beside it (another user, or other trials). The setups run interleaved, ``--repeats``
rounds; the table shows the median seconds per trial and the ratio to the idle machine's best. Prints a table and
writes JSON and Markdown (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import optuna
import torch

from squeezer.search import hardware
from squeezer.search.config.experiment import parse_config
from squeezer.search.trial.recipe import suggest_params
from squeezer.search.trial.workbench import Given, prepare
from squeezer.search.trial.run import attempt
from squeezer.search.config.yamlfile import read_yaml

from neighbours import busy  # experiments/neighbours.py, beside this script

EXPERIMENT = Path(__file__).with_name("fashion_mnist.yaml")
RECIPE = {"student": {"family": "cnn", "depth": 2, "channels": 8, "kernel": 3, "hidden": 32},
          "distill": {"temperature": 4.0, "soft_weight": 0.7, "hard_weight": 0.3, "epochs": 2, "lr": 0.002},
          "prune": {"ratio": 0.3, "structured": True, "finetune_epochs": 1},
          "quantize": {"bits": 8}}


def timed_trial(bench: Any, params: dict[str, Any], threads: int) -> float:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as workdir:
        outcome = attempt(bench, params, seed=0, workdir=Path(workdir))
    if outcome.metrics is None:
        raise RuntimeError(outcome.error)
    return outcome.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--load", type=int, default=hardware.cores(), help="CPU-heavy processes beside (default: "
                        "one per core)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_threads"))
    args = parser.parse_args()

    raw = read_yaml(EXPERIMENT)  # the demo with its space fixed to the one recipe
    raw["data"]["train_size"] = args.train_size
    raw["student"] = RECIPE["student"]
    raw["pipeline"] = [{step: values} for step, values in RECIPE.items() if step != "student"]
    config = parse_config(raw, base_dir=EXPERIMENT.parent)
    bench = prepare(config, Given())
    params = suggest_params(optuna.trial.FixedTrial({}), config)
    cores = hardware.cores()
    setups = [(load, threads) for load in (False, True) for threads in sorted({1, cores})]
    times: dict[tuple[bool, int], list[float]] = {setup: [] for setup in setups}
    for round_ in range(args.repeats):
        for load, threads in setups:
            with busy(args.load if load else 0):
                seconds = timed_trial(bench, params, threads)
            times[(load, threads)].append(seconds)
            print(f"round {round_ + 1}: {'loaded' if load else 'idle'}, {threads} thread(s): {seconds:.1f} s",
                  flush=True)
    best = min(statistics.median(times[(False, t)]) for t in sorted({1, cores}))
    rows = [{"machine": f"beside {args.load} busy process(es)" if load else "idle", "torch_threads": threads,
             "median_s": round(statistics.median(times[(load, threads)]), 2),
             "runs_s": [round(t, 2) for t in times[(load, threads)]],
             "vs_idle_best": round(statistics.median(times[(load, threads)]) / best, 2)} for load, threads in setups]
    header = "| machine | torch threads | median s per trial | runs (s) | vs idle best |\n|---|---:|---:|---|---:|"
    lines = [f"| {r['machine']} | {r['torch_threads']} | {r['median_s']} | {', '.join(map(str, r['runs_s']))} | "
             f"{r['vs_idle_best']}x |" for r in rows]
    table = "\n".join([header, *lines])
    print(f"\n{cores} cores; one trial = {args.train_size} training images, recipe {json.dumps(RECIPE)}\n{table}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"cores": cores, "train_size": args.train_size,
                                                    "load": args.load, "repeats": args.repeats, "recipe": RECIPE,
                                                    "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(f"`python experiments/bench_threads.py --repeats {args.repeats} --train-size "
                                      f"{args.train_size}` ({cores} cores, {args.load} busy neighbours when "
                                      f"loaded)\n\n{table}\n")


if __name__ == "__main__":
    main()
