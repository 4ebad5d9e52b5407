"""Distilling a causal language model, measured: the study of ``experiments/lm_kjv.yaml`` (its front against the
teacher and its bf16 / int8 baselines), then, at the same training budget as the study's trials (3 seeds each):

- the distillation gain: the best student of the study at <= 1/4 of the teacher's non-embedding parameters, trained
  with its recipe, against the same student trained on the same tokens without a teacher (next-token loss alone);
- the four token-level losses (forward KL, reverse KL, generalised JSD, skew KL) on that student;
- sequence-level (the teacher's own continuations) and on-policy (the student writes, the teacher scores) batches
  against token-level alone;
- the teacher's outputs cached (top-k) against the teacher run live: seconds per trial;
- generated samples of the teacher and the study's recommended student for the same prompts.

Writes ``experiments/results/lm_kjv.json`` and ``lm_kjv.md``.

    squeezer search experiments/lm_kjv.yaml --storage sqlite:///lm.db --tracking-uri sqlite:///lm-mlflow.db
    python experiments/bench_lm.py --storage sqlite:///lm.db
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

from squeezer.search.config.experiment import load_config
from squeezer.search.results.pareto import pareto_trials
from squeezer.search.results.report import human_bytes
from squeezer.search.runtime import lm_export
from squeezer.search.trial.lm.workbench import FOLDER, prepare
from squeezer.search.trial.recipe import replay_params
from squeezer.search.trial.run import run_trial

HERE = Path(__file__).parent
RESULTS = HERE / "results"
PROMPTS = ("In the beginning", "And the LORD said unto Moses,", "Blessed are the")
SEEDS = (0, 1, 2)


def run(bench: Any, params: dict[str, dict[str, Any]], seed: int) -> dict[str, float]:
    """One trial of ``params`` as the study runs it, plus its test perplexity and wall seconds."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-lm-") as tmp:
        metrics = run_trial(bench, params, seed, Path(tmp))
        metrics["test_perplexity"] = bench.test_quality(Path(tmp))
    metrics["seconds"] = time.monotonic() - started
    return metrics


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    for key in ("perplexity", "test_perplexity", "latency_ms", "seconds"):
        values = [r[key] for r in runs]
        out[key] = {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def with_distill(params: dict[str, dict[str, Any]], **settings: Any) -> dict[str, dict[str, Any]]:
    return {**params, "lm_distill": {**params["lm_distill"], **settings}}


def samples(model: Any, tokenizer: Any) -> dict[str, str]:
    return {p: tokenizer.decode(model.generate(**tokenizer(p, return_tensors="pt"), max_new_tokens=40,
                                               do_sample=False)[0], skip_special_tokens=True) for p in PROMPTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=HERE / "lm_kjv.yaml")
    parser.add_argument("--storage", required=True, help="the study's Optuna storage")
    parser.add_argument("--tracking-uri", default=None, help="the study's MLflow store (for the recommended model)")
    parser.add_argument("--out", type=Path, default=RESULTS / "lm_kjv.json")
    args = parser.parse_args()
    config = load_config(args.config)
    study = optuna.load_study(study_name=config.name, storage=args.storage)
    teacher = study.user_attrs["teacher"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    front = pareto_trials(study, config.objectives)
    tested = {int(k): v for k, v in study.user_attrs.get("test_perplexity", {}).items()}
    quarter = teacher["non_embedding_params"] / 4
    small = [t for t in done if t.user_attrs["metrics"]["non_embedding_params"] <= quarter
             and "baseline" not in t.params]
    best = min(small, key=lambda t: t.user_attrs["metrics"]["perplexity"]) if small else None
    result: dict[str, Any] = {
        "command": f"squeezer search {args.config} --storage {args.storage}; python experiments/bench_lm.py "
                   f"--storage {args.storage}",
        "teacher": teacher, "trials": len(done),
        "front": [{"trial": t.number, **t.user_attrs["metrics"], "test_perplexity": tested.get(t.number),
                   "params": dict(t.params)} for t in front],
        "recommended": study.user_attrs.get("recommended"),
        "recommended_because": study.user_attrs.get("recommended_because")}
    bench = prepare(config)
    bench.time_against(bench.baseline())
    if best is None:
        result["distillation_gain"] = "no trial of the study is at <= 1/4 of the teacher's non-embedding parameters"
    else:
        recipe = replay_params(config, best.params)
        result["best_quarter"] = {"trial": best.number, **best.user_attrs["metrics"], "params": dict(best.params)}
        print(f"best student at <= 1/4 non-embedding parameters: trial {best.number}", flush=True)
        with_teacher = [run(bench, recipe, s) for s in SEEDS]
        alone = with_distill(recipe, soft_weight=0.0, hard_weight=1.0)
        without = [run(bench, alone, s) for s in SEEDS]
        result["distillation_gain"] = {"with_teacher": summary(with_teacher), "without_teacher": summary(without)}
        plain = with_distill(recipe, temperature=1.0, hard_weight=0.0, beta=0.5, alpha=0.1, sequence_fraction=0.0,
                             on_policy_fraction=0.0)
        result["losses"] = {loss: summary([run(bench, with_distill(plain, loss=loss), s) for s in SEEDS])
                            for loss in ("forward_kl", "reverse_kl", "jsd", "skew_kl")}
        result["sequence_level"] = summary([run(bench, with_distill(plain, sequence_fraction=0.5), s)
                                            for s in SEEDS])
        result["on_policy"] = summary([run(bench, with_distill(plain, on_policy_fraction=0.5), s) for s in SEEDS])
        result["teacher_outputs"] = {"cached": result["losses"]["forward_kl"]["runs"][0]["seconds"],
                                     "live": run(bench, with_distill(plain, teacher_outputs="live"), 0)["seconds"]}
    result["samples"] = {"teacher": samples(bench.teacher, bench.tokenizer)}
    recommended = study.user_attrs.get("recommended")
    if recommended is not None:
        with tempfile.TemporaryDirectory(prefix="bench-lm-") as tmp:
            run_trial(bench, replay_params(config, study.trials[recommended].params), config.seed + recommended,
                      Path(tmp))
            result["samples"][f"recommended (trial {recommended})"] = samples(lm_export.load(Path(tmp) / FOLDER),
                                                                             bench.tokenizer)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    markdown = report(result)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)


def report(r: dict[str, Any]) -> str:
    t = r["teacher"]
    lines = [f"# Distilling the KJV Llama teacher ({r['trials']} trials)", "", f"`{r['command']}`", "",
             "## The front", "",
             "| trial | val ppl | test ppl | size | ms/token | tokens/s (batch) | non-embedding params | recipe |",
             "|---:|---:|---:|---:|---:|---:|---:|---|",
             f"| teacher | {t['perplexity']:.2f} | {t['test_perplexity']:.2f} | {human_bytes(t['size_bytes'])} | "
             f"{t['latency_ms']:.3f} | {t['throughput']:.0f} | {t['non_embedding_params']:,.0f} | |"]
    for m in sorted(r["front"], key=lambda m: m["perplexity"]):
        test = "" if m["test_perplexity"] is None else f"{m['test_perplexity']:.2f}"
        recipe = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in m["params"].items())
        lines.append(f"| {m['trial']}{'*' if m['trial'] == r['recommended'] else ''} | {m['perplexity']:.2f} | "
                     f"{test} | {human_bytes(m['size_bytes'])} | {m['latency_ms']:.3f} | {m['throughput']:.0f} | "
                     f"{m['non_embedding_params']:,.0f} | {recipe} |")
    lines += ["", f"\\* recommended: {r['recommended_because']}", ""]
    gain = r["distillation_gain"]
    if isinstance(gain, str):
        lines += ["## Distillation gain", "", gain, ""]
    else:
        b = r["best_quarter"]
        lines += ["## Distillation gain (3 seeds, the same tokens)", "",
                  f"Trial {b['trial']}: {b['non_embedding_params']:,.0f} non-embedding parameters "
                  f"({b['non_embedding_params'] / t['non_embedding_params']:.0%} of the teacher's).", "",
                  "| | val ppl | test ppl | vs teacher (test) | ms/token | x faster |",
                  "|---|---:|---:|---:|---:|---:|"]
        rows = [("with the teacher", gain["with_teacher"]), ("without a teacher", gain["without_teacher"])]
        rows += [(f"loss {name}", s) for name, s in r["losses"].items()]
        rows += [("sequence-level (half the batches)", r["sequence_level"]),
                 ("on-policy (half the batches)", r["on_policy"])]
        for name, s in rows:
            lines.append(f"| {name} | {s['perplexity']['mean']:.2f} ± {s['perplexity']['sd']:.2f} | "
                         f"{s['test_perplexity']['mean']:.2f} ± {s['test_perplexity']['sd']:.2f} | "
                         f"{s['test_perplexity']['mean'] / t['test_perplexity'] - 1:+.1%} | "
                         f"{s['latency_ms']['mean']:.3f} | {t['latency_ms'] / s['latency_ms']['mean']:.2f}x |")
        outputs = r["teacher_outputs"]
        lines += ["", f"Teacher outputs: cached top-k {outputs['cached']:.0f} s a trial, live {outputs['live']:.0f} s "
                  f"({'cached' if outputs['cached'] < outputs['live'] else 'live'} is cheaper here).", ""]
    lines += ["## Samples (greedy, 40 tokens)", ""]
    for who, texts in r["samples"].items():
        lines += [f"**{who}**", ""] + [f"- {text!r}" for text in texts.values()] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
