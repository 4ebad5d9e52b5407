"""Language-model students trained to the end: does a short-budget study rank recipes as a long budget does, and what
does the teacher give a student trained to the end?

    squeezer search experiments/lm_kjv.yaml --storage sqlite:///lm.db --tracking-uri sqlite:///lm-mlflow.db
    python experiments/bench_lm_finish.py --storage sqlite:///lm.db --tracking-uri sqlite:///lm-mlflow.db --steps 900

1. **Ranking.** ``--recipes`` recipes of the study (its front's distilled members, then the best of the rest) are
   trained again with ``squeezer finish`` at ``--steps`` (the study's trials: ``lm_distill.steps`` of the file); the
   validation perplexity of the study's short run against the finished one, and their Spearman and Kendall rank
   correlations.
2. **The distillation gain, trained to the end.** The study's best student at <= 1/4 of the teacher's non-embedding
   parameters, trained for ``--steps`` on the same tokens (``--seeds`` seeds each): with the study's recipe (the
   teacher's cached outputs), without the teacher (next-token loss alone, from the same initial weights: the
   teacher's, pruned or projected), and without the teacher from random weights. Test perplexity against the
   teacher's; the targets: within 25 % of the teacher's perplexity and >= 10 % better than without the teacher.

Every run is logged to MLflow beside the study (role ``finish`` for part 1). Writes results/lm_finish.json and .md
after every run; run again, it keeps the recipes already finished there and trains the others.
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

from squeezer.search.config.experiment import load_config
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
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--parts", default="rank,gain")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "lm_finish.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = load_config(args.config)
    study = optuna.load_study(study_name=config.name, storage=args.storage)
    teacher = study.user_attrs["teacher"]
    done = [t for t in study.trials if t.state.name == "COMPLETE" and "baseline" not in t.params]
    result: dict[str, Any] = {"command": f"python experiments/bench_lm_finish.py --storage {args.storage} "
                                         f"--tracking-uri {args.tracking_uri} --steps {args.steps} --recipes "
                                         f"{args.recipes} --seeds {args.seeds}",
                              "teacher": teacher, "study_steps": _steps(config), "steps": args.steps}
    if "rank" in args.parts:
        front = [t for t in pareto_trials(study, config.objectives) if "baseline" not in t.params]
        rest = sorted((t for t in done if t not in front), key=lambda t: t.user_attrs["metrics"]["perplexity"])
        chosen = (front + rest)[:args.recipes]
        earlier = json.loads(args.out.read_text()).get("ranking", []) if args.out.is_file() else []
        rows = result["ranking"] = [r for r in earlier if r["trial"] in {t.number for t in chosen}]
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
        quarter = teacher["non_embedding_params"] / 4
        small = [t for t in done if t.user_attrs["metrics"]["non_embedding_params"] <= quarter]
        best = min(small, key=lambda t: t.user_attrs["metrics"]["perplexity"])
        recipe = replay_params(config, best.params)
        recipe["lm_distill"] = {**recipe["lm_distill"], "steps": args.steps}
        alone = {**recipe, "lm_distill": {**recipe["lm_distill"], "soft_weight": 0.0, "hard_weight": 1.0}}
        bench = benches.prepare(config)
        bench.time_against(teacher)
        result["gain"] = {"trial": best.number, "params": dict(best.params),
                          "non_embedding_params": best.user_attrs["metrics"]["non_embedding_params"], "runs": {}}
        for name, params, fresh in (("distilled", recipe, False), ("without_teacher", alone, False),
                                    ("without_teacher_random_init", alone, True)):
            runs = result["gain"]["runs"][name] = []
            for seed in range(args.seeds):
                runs.append(run(bench, params, seed, fresh))
                print(f"{name} seed {seed}: {runs[-1]}", flush=True)
                write(result, args.out)
        result["gain"]["summary"] = summary(result["gain"]["runs"], teacher)
        write(result, args.out)
    table = render(result)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


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
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-lm-finish-") as tmp:
            metrics = run_trial(bench, params, seed, Path(tmp))
            metrics["test_perplexity"] = bench.test_quality(Path(tmp))
    finally:
        causal.build = build
    return {"perplexity": metrics["perplexity"], "test_perplexity": metrics["test_perplexity"],
            "seconds": time.monotonic() - started}


def summary(runs: dict[str, list[dict[str, float]]], teacher: dict[str, float]) -> dict[str, Any]:
    mean = {name: statistics.mean(r["test_perplexity"] for r in rs) for name, rs in runs.items()}
    return {"test_ppl": mean, "teacher_test_ppl": teacher["test_perplexity"],
            "over_teacher": mean["distilled"] / teacher["test_perplexity"] - 1,
            "gain_vs_without_teacher": 1 - mean["distilled"] / mean["without_teacher"],
            "gain_vs_random_init": 1 - mean["distilled"] / mean["without_teacher_random_init"]}


def write(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")


def render(r: dict[str, Any]) -> str:
    lines = [f"`{r['command']}`", ""]
    if "ranking" in r:
        lines += [f"## Short ({r['study_steps']} steps) against long ({r['steps']} steps) training", "",
                  "| trial | on the front | val ppl, short | val ppl, long | test ppl, long |",
                  "|---:|---|---:|---:|---:|"]
        lines += [f"| {x['trial']} | {'yes' if x['on_front'] else ''} | {x['short_ppl']:.2f} | {x['long_ppl']:.2f} | "
                  f"{x['long_test_ppl']:.2f} |" for x in r["ranking"]]
        if "spearman" in r:
            lines += ["", f"Spearman {r['spearman']:.2f}, Kendall {r['kendall']:.2f} ({len(r['ranking'])} recipes)."]
    if "gain" in r and "summary" in r["gain"]:
        s, g = r["gain"]["summary"], r["gain"]
        lines += ["", f"## Trial {g['trial']}'s student ({g['non_embedding_params']:,.0f} non-embedding parameters) "
                  f"trained {r['steps']} steps", "", "| training | test ppl (mean) | runs |", "|---|---:|---|"]
        for name, runs in g["runs"].items():
            each = ", ".join(f"{x['test_perplexity']:.2f}" for x in runs)
            lines.append(f"| {name} | {s['test_ppl'][name]:.2f} | {each} |")
        lines += ["", f"Teacher {s['teacher_test_ppl']:.2f}: distilled is {100 * s['over_teacher']:+.1f} % over it "
                  f"(target within 25 %); {100 * s['gain_vs_without_teacher']:.1f} % better than without the teacher "
                  f"(target >= 10 %), {100 * s['gain_vs_random_init']:.1f} % better than from random weights."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
