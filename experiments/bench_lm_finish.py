"""Language-model students trained to the end: does a short-budget study rank recipes as a long budget does, and what
does the teacher give a student trained to the end?

    squeezer search experiments/lm_kjv.yaml --storage sqlite:///lm.db --tracking-uri sqlite:///lm-mlflow.db
    python experiments/bench_lm_finish.py --storage sqlite:///lm.db --tracking-uri sqlite:///lm-mlflow.db --steps 900
    python experiments/bench_lm_finish.py --storage sqlite:///lm.db --tracking-uri sqlite:///lm-mlflow.db --parts gain \
        --gain-steps 1500 --patience 3 --seeds 3

1. **Ranking.** ``--recipes`` recipes of the study (its front's distilled members, then the best of the rest) are
   trained again with ``squeezer finish`` at ``--steps`` (the study's trials: ``lm_distill.steps`` of the file); the
   validation perplexity of the study's short run against the finished one, and their Spearman and Kendall rank
   correlations.
2. **The distillation gain, trained to the end.** The study's best student at <= 1/4 of the teacher's non-embedding
   parameters, trained for ``--gain-steps`` on the same tokens (the learning rate's cosine over them; stopped early
   where validation perplexity has not improved for ``--patience`` evaluations; ``--seeds`` seeds each): with the
   study's recipe (the teacher's cached outputs), without the teacher (next-token loss alone, from the same initial
   weights: the teacher's, pruned or projected), and without the teacher from random weights. Test perplexity against
   the teacher's; the targets: within 25 % of the teacher's perplexity and >= 10 % better than without the teacher.
   And the best at <= 1/2 of the parameters, distilled the same way: the target, within 10 % of the teacher's.

Every run is logged to MLflow beside the study (role ``finish`` for part 1). Writes results/lm_finish.json and .md
after every run; run again, it keeps the recipes and seeds already finished there and trains the others (a part
not asked for keeps its earlier results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from scipy import stats

from squeezer.search.config.experiment import load_config, parse_config
from squeezer.search.models import causal
from squeezer.search.results.pareto import pareto_trials
from squeezer.search.study.finish import finish
from squeezer.search.trial import benches
from squeezer.search.trial.recipe import replay_params
from squeezer.search.trial.run import run_trial

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=HERE / "lm_kjv.yaml")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--recipes", type=int, default=6)
    parser.add_argument("--gain-steps", type=int, default=1500, help="part 2: the most training steps")
    parser.add_argument("--patience", type=int, default=3, help="part 2: evaluations without improvement to stop")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shares", default="4,2", help="part 2: the student sizes, as fractions 1/N of the "
                                                       "teacher's non-embedding parameters")
    parser.add_argument("--parts", default="rank,gain")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "lm_finish.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = load_config(args.config)
    study = optuna.load_study(study_name=config.name, storage=args.storage)
    teacher = study.user_attrs["teacher"]
    done = [t for t in study.trials if t.state.name == "COMPLETE" and "baseline" not in t.params]
    command = f"python experiments/bench_lm_finish.py --storage {args.storage} --tracking-uri {args.tracking_uri}"
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.update({"teacher": teacher, "study_steps": _steps(config)})
    if "rank" in args.parts:
        result.update({"command": f"{command} --parts rank --steps {args.steps} --recipes {args.recipes}",
                       "steps": args.steps})
        front = [t for t in pareto_trials(study, config.objectives) if "baseline" not in t.params]
        rest = sorted((t for t in done if t not in front), key=lambda t: t.user_attrs["metrics"]["perplexity"])
        chosen = (front + rest)[:args.recipes]
        rows = result["ranking"] = [r for r in result.get("ranking", []) if r["trial"] in {t.number for t in chosen}]
        for t in chosen:
            if any(r["trial"] == t.number for r in rows):
                continue  # finished by an earlier run of this script (its result kept)
            started = time.monotonic()
            long = finish(config, t.number, args.storage, args.tracking_uri, budget=args.steps)
            rows.append({"trial": t.number, "on_front": t in front, "short_ppl": t.user_attrs["metrics"]["perplexity"],
                         "long_ppl": long.metrics["perplexity"], "long_test_ppl": long.metrics["test_perplexity"],
                         "seconds": time.monotonic() - started})
            print(f"trial {t.number}: {rows[-1]}", flush=True)
            write(result, args.out)
        short, long_ = [r["short_ppl"] for r in rows], [r["long_ppl"] for r in rows]
        result["spearman"] = float(stats.spearmanr(short, long_).statistic)
        result["kendall"] = float(stats.kendalltau(short, long_).statistic)
        write(result, args.out)
    if "gain" in args.parts:
        result["gain_command"] = (f"{command} --parts gain --gain-steps {args.gain_steps} --patience {args.patience} "
                                  f"--seeds {args.seeds}")
        raw = config.raw  # the students' speed is not this part's question: timed in 3 rounds, not the file's
        bench = benches.prepare(parse_config({**raw, "measure": {**raw.get("measure", {}), "repeats": 3, "warmup": 1}},
                                             base_dir=args.config.parent))
        bench.time_against(teacher)
        gains = result["gain"] = result.get("gain", {})
        shares = {4: ("distilled", "without_teacher", "without_teacher_random_init"), 2: ("distilled",)}
        for share, conditions in shares.items():
            if str(share) not in args.shares.split(","):
                continue
            best = best_within(done, teacher["non_embedding_params"] / share)
            key = f"1/{share}"
            if gains.get(key, {}).get("trial") != best.number or gains[key].get("steps") != args.gain_steps:
                gains[key] = {"trial": best.number, "steps": args.gain_steps, "params": dict(best.params), "runs": {},
                              "non_embedding_params": best.user_attrs["metrics"]["non_embedding_params"]}
            distilled = replay_params(config, best.params)
            distilled["lm_distill"] = {**distilled["lm_distill"], "steps": args.gain_steps,
                                       "patience": args.patience}
            alone = {**distilled, "lm_distill": {**distilled["lm_distill"], "soft_weight": 0.0, "hard_weight": 1.0}}
            recipes = {"distilled": (distilled, False), "without_teacher": (alone, False),
                       "without_teacher_random_init": (alone, True)}
            for name in conditions:
                runs = gains[key]["runs"].setdefault(name, [])
                for seed in range(len(runs), args.seeds):  # the seeds an earlier run of this script left
                    params, fresh = recipes[name]
                    runs.append(run(bench, params, seed, fresh))
                    print(f"1/{share}: {name} seed {seed}: {runs[-1]}", flush=True)
                    write(result, args.out)
            gains[key]["summary"] = summary(gains[key]["runs"], teacher)
            write(result, args.out)
    table = render(result)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


def best_within(done: list[Any], params: float) -> Any:
    """The study's trial of lowest validation perplexity among those of at most ``params`` non-embedding
    parameters."""
    small = [t for t in done if t.user_attrs["metrics"]["non_embedding_params"] <= params]
    if not small:
        raise SystemExit(f"no trial of the study has at most {params:,.0f} non-embedding parameters")
    return min(small, key=lambda t: t.user_attrs["metrics"]["perplexity"])


def _steps(config: Any) -> int:
    return next(int(step.space["steps"].value) for step in config.pipeline if step.name == "lm_distill")


def run(bench: Any, params: dict[str, dict[str, Any]], seed: int, fresh: bool) -> dict[str, float]:
    """One training of ``params`` (``fresh``: the student's weights drawn at random, its architecture kept)."""
    build = causal.build
    if fresh:
        def random_weights(*args: Any, **kwargs: Any) -> Any:
            model = build(*args, **kwargs)
            return type(model)(model.config)  # the same architecture, initialised as transformers does
        causal.build = random_weights
    started, curve = time.monotonic(), []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-lm-finish-") as tmp:
            metrics = run_trial(bench, params, seed, Path(tmp),
                                report=lambda step, m: curve.append(m["lm_distill.val_perplexity"]))
            metrics["test_perplexity"] = bench.test_quality(Path(tmp))
    finally:
        causal.build = build
    return {"perplexity": metrics["perplexity"], "test_perplexity": metrics["test_perplexity"],
            "evaluations": len(curve), "val_curve": curve, "seconds": time.monotonic() - started}


def summary(runs: dict[str, list[dict[str, float]]], teacher: dict[str, float]) -> dict[str, Any]:
    mean = {name: statistics.mean(r["test_perplexity"] for r in rs) for name, rs in runs.items() if rs}
    sd = {name: statistics.pstdev(r["test_perplexity"] for r in rs) for name, rs in runs.items() if rs}
    out = {"test_ppl": mean, "test_ppl_sd": sd, "teacher_test_ppl": teacher["test_perplexity"],
           "over_teacher": mean["distilled"] / teacher["test_perplexity"] - 1}
    for name, key in (("without_teacher", "gain_vs_without_teacher"), ("without_teacher_random_init",
                                                                       "gain_vs_random_init")):
        if name in mean:
            out[key] = 1 - mean["distilled"] / mean[name]
    return out


def write(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")


def render(r: dict[str, Any]) -> str:
    lines = [f"`{r['command']}`", ""] if "command" in r else []
    if "ranking" in r:
        lines += [f"## Short ({r['study_steps']} steps) against long ({r['steps']} steps) training", "",
                  "| trial | on the front | val ppl, short | val ppl, long | test ppl, long |",
                  "|---:|---|---:|---:|---:|"]
        lines += [f"| {x['trial']} | {'yes' if x['on_front'] else ''} | {x['short_ppl']:.2f} | {x['long_ppl']:.2f} | "
                  f"{x['long_test_ppl']:.2f} |" for x in r["ranking"]]
        if "spearman" in r:
            lines += ["", f"Spearman {r['spearman']:.2f}, Kendall {r['kendall']:.2f} ({len(r['ranking'])} recipes)."]
    if r.get("gain"):
        lines += ["", f"`{r['gain_command']}`"]
    for key, g in r.get("gain", {}).items():
        if "summary" not in g:
            continue
        s = g["summary"]
        lines += ["", f"## {key} of the teacher's non-embedding parameters: trial {g['trial']}'s student "
                  f"({g['non_embedding_params']:,.0f}), trained to the end (at most {g['steps']} steps)", "",
                  "| training | test ppl (mean ± sd) | per seed | evaluations run |", "|---|---:|---|---|"]
        for name, runs in g["runs"].items():
            each = ", ".join(f"{x['test_perplexity']:.2f}" for x in runs)
            lines.append(f"| {name} | {s['test_ppl'][name]:.2f} ± {s['test_ppl_sd'][name]:.2f} | {each} | "
                         f"{', '.join(str(x.get('evaluations', '?')) for x in runs)} |")
        within = 0.25 if key == "1/4" else 0.10
        said = [f"Teacher {s['teacher_test_ppl']:.2f}: distilled is {100 * s['over_teacher']:+.1f} % over it (target "
                f"within {100 * within:.0f} %: {'met' if s['over_teacher'] <= within else 'missed'})"]
        if "gain_vs_without_teacher" in s:
            gain = s["gain_vs_without_teacher"]
            said.append(f"{100 * gain:.1f} % lower than without the teacher (target >= 10 %: "
                        f"{'met' if gain >= 0.10 else 'missed'})")
        if "gain_vs_random_init" in s:
            said.append(f"{100 * s['gain_vs_random_init']:.1f} % lower than without the teacher from random weights")
        lines += ["", "; ".join(said) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
