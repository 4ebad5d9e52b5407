"""How fast does each sampler find a good front? Hypervolume against trials, side by side, several seeds.

    python experiments/bench_search.py            # Fashion-MNIST (8k training images), 3 seeds; ~25 minutes
    python experiments/bench_search.py --dataset digits --samplers random,squeezer \
        --out experiments/results/bench_search_digits.json    # scikit-learn's digits, the shipped digits study

Each sampler (Optuna's defaults: random, NSGA-II, TPE; and Squeezer's default: screening sampler with Pareto-aware
early stopping) runs the demo's space with the same budget of trials per seed; random search runs twice as many, so
that the question "does a sampler reach at N trials what random search reaches at 2N?" can be answered. The
hypervolume after k trials is that of the completed ones among the first k (a trial stopped early or rejected
before training counts as spent), in the study's own teacher-scaled units (``squeezer.search.results.scoring``).

Per hour of the user's time as well as per trial: with T the wall time a sampler took for its N trials (each seed
its own), its hypervolume at T against random search's at 2T, run side by side — random runs last in each seed, at
least 2N trials and on until twice the others' wall time (``search.timeout_s``); and the sampler's own time per trial
(Squeezer's screening, ``Screen.propose``) as a share of the trial's wall time.

Optuna's samplers run with early stopping in shadow mode: every trial runs to its end, and the rule's verdict is
kept. That audits the rule: how many trials it would have stopped, and how many of those ended on the final front.
Prints a table, writes JSON, Markdown and a plot (``--out``).
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

from squeezer.search.results import scoring
from squeezer.search.config.experiment import load_config, parse_config
from squeezer.search.runner import run_study
from squeezer.search.study import squeezer_sampler

HERE = Path(__file__).resolve().parent
SAMPLERS = ("random", "nsga2", "tpe", "squeezer")
DATASETS = {"fashion_mnist": "fashion_mnist.yaml", "digits": "digits.yaml"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="N: the budget of NSGA-II and TPE (random: 2N)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=8000, help="fashion_mnist: training images")
    parser.add_argument("--dataset", choices=list(DATASETS), default="fashion_mnist")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated (random is needed)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_search.json")
    args = parser.parse_args(argv)
    samplers = [s for s in SAMPLERS if s in args.samplers.split(",")]
    curves: dict[str, list[list[float]]] = {s: [] for s in samplers}
    clocks: dict[str, list[list[float]]] = {s: [] for s in samplers}
    audits: list[dict[str, int]] = []
    sampler_share: dict[str, list[float]] = {s: [] for s in samplers}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            longest = 0.0  # the seconds the other samplers took for N trials, start-up included, this seed
            for sampler in sorted(samplers, key=lambda s: s == "random"):  # interleaved seed by seed; random last
                # random: at least 2N trials, and on until twice the others' wall time (the comparison per hour)
                budget = max(2, 50 if longest else 0) * args.trials if sampler == "random" else args.trials
                timeout = 2 * longest if sampler == "random" and longest else None
                SCREENING.clear()
                hv, clock, audit = history(config(sampler, seed, args, timeout), budget, Path(tmp),
                                           f"{sampler}-{seed}")
                longest = max(longest, clock[min(args.trials, len(clock)) - 1] + audit.pop("lead_s"))
                curves[sampler].append(hv)
                clocks[sampler].append(clock)
                sampler_share[sampler].append(sum(SCREENING) / clock[-1])
                audits += [audit | {"sampler": sampler, "seed": seed}] if sampler != "squeezer" else []  # type: ignore
                print(f"{sampler} seed {seed}: hypervolume {hv[-1]:.4f} after {budget} trials, {clock[-1]:.0f} s; "
                      f"{audit}", file=sys.stderr)
    rows = summarise(curves, clocks, args.trials)
    timed = by_wall_time(curves, clocks, sampler_share, args.trials)
    table = render(rows, args) + "\n\n" + render_wall_time(timed, args.trials) + "\n\n" + render_audit(audits)
    print(table)
    plot(curves, clocks, args.out.with_suffix(".png"))
    args.out.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out)}, "curves": curves,
                                    "seconds": clocks, "rows": rows, "by_wall_time": timed,
                                    "sampler_share": sampler_share, "audit": audits, "table": table}, indent=2))
    args.out.with_suffix(".md").write_text(table + "\n")
    return 0


#: Seconds each ``Screen.propose`` took in the study running now (Squeezer's sampler screening before a trial).
SCREENING: list[float] = []
_propose = squeezer_sampler.Screen.propose


def _timed_propose(self: Any, *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    try:
        return _propose(self, *args, **kwargs)
    finally:
        SCREENING.append(time.perf_counter() - start)


squeezer_sampler.Screen.propose = _timed_propose  # type: ignore[method-assign]


def config(sampler: str, seed: int, args: argparse.Namespace, timeout: float | None = None) -> Any:
    """The demo's study on fewer images, two distillation epochs (or the shipped digits study as it is), this
    sampler and seed."""
    raw = load_config(HERE / DATASETS[args.dataset]).raw
    if args.dataset == "fashion_mnist":
        raw = {**raw, "data": {**raw["data"], "train_size": args.train_size},
               "pipeline": [{**step, "distill": {**step["distill"], "epochs": 2}} if "distill" in step else step
                            for step in raw["pipeline"]]}
    raw = {**raw, "seed": seed, "search": {"sampler": sampler, "trials": args.trials, "timeout_s": timeout,
                                           "scheduler": "pareto" if sampler == "squeezer" else "shadow"}}
    return parse_config(raw, base_dir=HERE)


def history(cfg: Any, budget: int, tmp: Path, name: str) -> tuple[list[float], list[float], dict[str, Any]]:
    """The hypervolume after each of the ``budget`` trials: of the completed ones among the first k (a trial rejected
    by the size budget before training, or stopped early, counts as spent, and adds nothing); the seconds since the
    study began when each ended; and the shadow audit of early stopping (with ``lead_s``: the seconds from the call
    to the first trial's start)."""
    called = time.time()
    result = run_study(cfg, trials=budget, study_name=name, storage=f"sqlite:///{tmp}/optuna.db",
                       tracking_uri=f"sqlite:///{tmp}/mlflow.db", out=lambda line: None)
    study = result.study
    teacher = study.user_attrs["teacher"]
    spent = [t for t in sorted(study.trials, key=lambda t: t.number)
             if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)][:budget]
    hv = scoring.history([t.user_attrs["metrics"] if t.state == TrialState.COMPLETE else None for t in spent],
                         cfg.objectives, teacher, cfg.search.reference)
    started = min(t.datetime_start.timestamp() for t in spent)  # the teacher's training is not the sampler's time
    clock = [t.datetime_complete.timestamp() - started for t in spent]
    front = {t.number for t in result.front}
    would = [t.number for t in spent if t.user_attrs.get("would_stop")]
    audit = {"trials": len(spent), "would_stop": len(would), "would_stop_on_front": len(front & set(would)),
             "stopped": sum(t.state == TrialState.PRUNED for t in spent), "front": len(front),
             "lead_s": started - called}
    return hv, clock, audit


def summarise(curves: dict[str, list[list[float]]], clocks: dict[str, list[list[float]]],
              n: int) -> list[dict[str, Any]]:
    """Per sampler: mean and std of the hypervolume at N/4, N/2 and N trials, and (random) at 2N; minutes to N."""
    random_2n = statistics.mean(c[min(2 * n, len(c)) - 1] for c in curves["random"])
    rows = []
    for sampler, runs in curves.items():
        row: dict[str, Any] = {"sampler": sampler}
        for k in (n // 4, n // 2, n, 2 * n):
            values = [c[min(k, len(c)) - 1] for c in runs if len(c) >= k]
            if values:
                row[k] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        row["reaches_random_2n"] = row[n][0] >= random_2n
        row["minutes_to_n"] = statistics.mean(c[min(n, len(c)) - 1] for c in clocks[sampler]) / 60
        rows.append(row)
    return rows


def at_time(hv: list[float], clock: list[float], seconds: float) -> float:
    """The hypervolume at wall time ``seconds``: of the trials ended by then (0 before the first)."""
    ended = [h for h, c in zip(hv, clock, strict=True) if c <= seconds]
    return ended[-1] if ended else 0.0


def by_wall_time(curves: dict[str, list[list[float]]], clocks: dict[str, list[list[float]]],
                 share: dict[str, list[float]], n: int) -> list[dict[str, Any]]:
    """Per sampler, seed by seed: T, the seconds its first N trials took; its hypervolume at T; random search's at
    T and at 2T (whether random had run out of trials by 2T, too); its own time per trial as a share."""
    rows = []
    for sampler, runs in curves.items():
        per_seed = []
        for seed, (hv, clock) in enumerate(zip(runs, clocks[sampler], strict=True)):
            t = clock[min(n, len(clock)) - 1]
            rhv, rclock = curves["random"][seed], clocks["random"][seed]
            per_seed.append({"seed": seed, "T_s": t, "hv_at_T": at_time(hv, clock, t),
                             "random_at_T": at_time(rhv, rclock, t), "random_at_2T": at_time(rhv, rclock, 2 * t),
                             "random_ran_out": rclock[-1] < 2 * t})
        mean = {k: statistics.mean(p[k] for p in per_seed) for k in ("T_s", "hv_at_T", "random_at_T", "random_at_2T")}
        rows.append({"sampler": sampler, **mean, "wins": sum(p["hv_at_T"] >= p["random_at_2T"] for p in per_seed),
                     "seeds": per_seed, "sampler_share": statistics.mean(share[sampler])})
    return rows


def render_wall_time(rows: list[dict[str, Any]], n: int) -> str:
    lines = [f"| sampler | T: minutes for {n} trials | HV at T | random's HV at T | random's HV at 2T | reaches random "
             "at 2T? (seeds) | sampler's own time, share of the trials' |", "|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        out = " (random ran out of trials before 2T)" if any(p["random_ran_out"] for p in r["seeds"]) else ""
        lines.append(f"| {r['sampler']} | {r['T_s'] / 60:.1f} | {r['hv_at_T']:.4f} | {r['random_at_T']:.4f} | "
                     f"{r['random_at_2T']:.4f}{out} | {'yes' if r['hv_at_T'] >= r['random_at_2T'] else 'no'} "
                     f"({r['wins']}/{len(r['seeds'])}) | {100 * r['sampler_share']:.1f} % |")
    return "\n".join(lines)


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    n = args.trials
    ks = (n // 4, n // 2, n, 2 * n)
    lines = ["| sampler | " + " | ".join(f"HV after {k} trials" for k in ks) + " | at N, reaches random at 2N? "
             f"| minutes for {n} trials |", "|---|" + "---:|" * len(ks) + "---|---:|"]
    for r in rows:
        cells = " | ".join(f"{r[k][0]:.4f} ± {r[k][1]:.4f}" if k in r else "" for k in ks)
        lines.append(f"| {r['sampler']} | {cells} | {'yes' if r['reaches_random_2n'] else 'no'} "
                     f"| {r['minutes_to_n']:.1f} |")
    data = (f"Fashion-MNIST ({args.train_size} training images), the demo's space with 2 distillation epochs"
            if args.dataset == "fashion_mnist" else "scikit-learn's digits (1,079 training images), the shipped "
            "digits study (experiments/digits.yaml)")
    return "\n".join(lines) + (f"\n\n{data}; mean ± std over {args.seeds} seeds; hypervolume in teacher-scaled "
                               "objectives (accuracy, bytes, batch-1 latency in ONNX Runtime, timed against the "
                               "teacher).")


def render_audit(audits: list[dict[str, int]]) -> str:
    """The shadow audit of Pareto-aware early stopping over Optuna's samplers' studies."""
    total = {k: sum(a[k] for a in audits) for k in ("trials", "would_stop", "would_stop_on_front", "front")}
    names = ", ".join(sorted({a["sampler"] for a in audits}))
    return (f"Early stopping audited in shadow mode over the {len(audits)} studies of {names}: of "
            f"{total['trials']} trials it would have stopped {total['would_stop']}; "
            f"{total['would_stop_on_front']} of those ended on their study's final front "
            f"({total['front']} front members in all).")


def plot(curves: dict[str, list[list[float]]], clocks: dict[str, list[list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_trial, by_time) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for sampler, runs in curves.items():
        length = min(len(c) for c in runs)
        mean = [statistics.mean(c[k] for c in runs) for k in range(length)]
        low = [min(c[k] for c in runs) for k in range(length)]
        high = [max(c[k] for c in runs) for k in range(length)]
        line, = by_trial.plot(range(1, length + 1), mean, label=sampler)
        by_trial.fill_between(range(1, length + 1), low, high, alpha=0.15)
        for i, (hv, clock) in enumerate(zip(runs, clocks[sampler], strict=True)):
            by_time.plot([s / 60 for s in clock], hv, color=line.get_color(), alpha=0.7,
                         label=sampler if i == 0 else None)
    by_trial.set_xlabel("trials (mean over seeds; band: min to max)")
    by_trial.set_ylabel("hypervolume (teacher-scaled)")
    by_time.set_xlabel("minutes (each seed)")
    for ax in (by_trial, by_time):
        ax.grid(alpha=0.3)
    by_trial.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
