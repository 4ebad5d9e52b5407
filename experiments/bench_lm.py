"""Distilling a causal language model, measured: the study of ``experiments/lm_kjv.yaml`` (its front in ONNX Runtime
GenAI against the teacher's fp32 build and its own int4 / int8 builds), then, at the same training budget as the
study's trials (``--seeds`` seeds each, the same tokens):

- the targets on the front: a distilled member >= 1.5x faster per token than the teacher's int4 build within 10 % of
  the teacher's perplexity;
- the distillation gain: the best student of the study at <= 1/4 of the teacher's non-embedding parameters, trained
  with its recipe and with forward KL at T = 1 and T = 2, against the same student trained on the same tokens without
  a teacher (next-token loss alone); the teacher's outputs cached (top-k and the tempered rest) against the teacher
  run live, at T = 2: perplexity and seconds per trial;
- (``--variants`` adds them) the four token-level losses, sequence-level (the teacher's own continuations) and
  on-policy (the student writes, the teacher scores) batches;
- generated samples of the teacher and the study's recommended student for the same prompts.

Writes ``experiments/results/lm_kjv.json`` and ``lm_kjv.md``.

    squeezer search experiments/lm_kjv.yaml --storage sqlite:///lm.db --tracking-uri sqlite:///lm-mlflow.db
    python experiments/bench_lm.py --storage sqlite:///lm.db
"""

from __future__ import annotations

import argparse
import copy
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
from squeezer.compressors.lm.quantize import Precision
from squeezer.search.runtime import lm as lm_runtimes
from squeezer.search.runtime.lm import hf
from squeezer.search.trial.lm.metrics import measure
from squeezer.search.trial.lm.workbench import FOLDER, prepare
from squeezer.search.trial.recipe import replay_params
from squeezer.search.trial.run import run_trial

HERE = Path(__file__).parent
RESULTS = HERE / "results"
PROMPTS = ("In the beginning", "And the LORD said unto Moses,", "Blessed are the")
EXTRA = ("losses", "sequence_level", "on_policy")


def run(bench: Any, params: dict[str, dict[str, Any]], seed: int) -> dict[str, float]:
    """One trial of ``params`` as the study runs it, plus its test perplexity and wall seconds."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-lm-") as tmp:
        metrics = run_trial(bench, params, seed, Path(tmp))
        metrics["test_perplexity"] = bench.test_quality(Path(tmp))
    metrics["seconds"] = time.monotonic() - started
    print(f"  seed {seed}: test perplexity {metrics['test_perplexity']:.2f}, {metrics['seconds']:.0f} s", flush=True)
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


def targets(teacher: dict[str, float], front: list[dict[str, Any]], int4: dict[str, float] | None) -> dict[str, Any]:
    """The front against the issue's target: a distilled member >= 1.5x faster per token than the teacher's int4
    build, within 10 % of the teacher's perplexity (validation and test)."""
    if int4 is None:
        return {"int4_baseline": None}
    close = [m for m in front if "baseline" not in m["params"] and m["perplexity"] <= 1.1 * teacher["perplexity"]]
    best = min(close, key=lambda m: m["latency_ms"], default=None)
    return {"int4_baseline": int4, "int4_vs_fp32": teacher["latency_ms"] / int4["latency_ms"],
            "fastest_within_10pct": best,
            "x_faster_than_int4": None if best is None else int4["latency_ms"] / best["latency_ms"],
            "met": best is not None and int4["latency_ms"] / best["latency_ms"] >= 1.5}


def runtimes(bench: Any) -> dict[str, dict[str, float]]:
    """The teacher deployed at each precision in each runtime (ONNX Runtime GenAI; transformers in eager torch),
    each timed in the same rounds as the teacher's fp32 ONNX Runtime GenAI build: ms per generated token at batch 1,
    to the first token, and its bytes."""
    reference = bench.reference()
    found = {}
    for runtime, bits in (("onnxruntime-genai", 32), ("onnxruntime-genai", 8), ("onnxruntime-genai", 4),
                          ("torch", 32), ("torch", 16), ("torch", 8), ("torch", 4)):
        with tempfile.TemporaryDirectory(prefix="bench-lm-") as tmp:
            model = Precision(bits, 32).mark(copy.deepcopy(bench.teacher))
            deployed = lm_runtimes.deploy(model, bench.tokenizer, runtime, Path(tmp), bench.config.measure.threads)
            timed = measure(deployed, bench.prompts(), bench.config.measure, reference)
            found[f"{runtime} {bits}"] = {"latency_ms": timed["latency_ms"], "ttft_ms": timed["ttft_ms"],
                                          "size_bytes": float(deployed.size_bytes())}
        print(f"  teacher, {runtime} {bits} bits: {found[f'{runtime} {bits}']}", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=HERE / "lm_kjv.yaml")
    parser.add_argument("--storage", required=True, help="the study's Optuna storage")
    parser.add_argument("--out", type=Path, default=RESULTS / "lm_kjv.json")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", default="", help=f"more, comma-separated: {', '.join(EXTRA)}")
    args = parser.parse_args()
    seeds = range(args.seeds)
    extra = {v for v in args.variants.split(",") if v}
    config = load_config(args.config)
    study = optuna.load_study(study_name=config.name, storage=args.storage)
    teacher = study.user_attrs["teacher"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    front = pareto_trials(study, config.objectives)
    tested = {int(k): v for k, v in study.user_attrs.get("test_perplexity", {}).items()}
    members = [{"trial": t.number, **t.user_attrs["metrics"], "test_perplexity": tested.get(t.number),
                "params": dict(t.params)} for t in front]
    int4 = next(({"trial": t.number, **t.user_attrs["metrics"], "test_perplexity": tested.get(t.number)}
                 for t in done if t.params.get("baseline") == "int4"), None)
    quarter = teacher["non_embedding_params"] / 4
    small = [t for t in done if t.user_attrs["metrics"]["non_embedding_params"] <= quarter
             and "baseline" not in t.params]
    best = min(small, key=lambda t: t.user_attrs["metrics"]["perplexity"]) if small else None
    result: dict[str, Any] = {
        "command": f"squeezer search {args.config} --storage {args.storage}; python experiments/bench_lm.py "
                   f"--storage {args.storage} --seeds {args.seeds}" + (f" --variants {args.variants}" if extra else ""),
        "runtime": config.measure.runtime, "teacher": teacher, "trials": len(done), "front": members,
        "targets": targets(teacher, members, int4),
        "recommended": study.user_attrs.get("recommended"),
        "recommended_because": study.user_attrs.get("recommended_because")}
    bench = prepare(config)
    bench.time_against(bench.baseline())
    result["runtimes"] = runtimes(bench)
    if best is None:
        result["distillation_gain"] = "no trial of the study is at <= 1/4 of the teacher's non-embedding parameters"
    else:
        recipe = replay_params(config, best.params)
        result["best_quarter"] = {"trial": best.number, **best.user_attrs["metrics"], "params": dict(best.params)}
        plain = with_distill(recipe, temperature=1.0, hard_weight=0.0, beta=0.5, alpha=0.1, sequence_fraction=0.0,
                             on_policy_fraction=0.0, loss="forward_kl")
        variants = {"without_teacher": with_distill(recipe, soft_weight=0.0, hard_weight=1.0),
                    "study_recipe": recipe, "forward_kl_T1": plain,
                    "forward_kl_T2": with_distill(plain, temperature=2.0),
                    "forward_kl_T2_live": with_distill(plain, temperature=2.0, teacher_outputs="live")}
        if "losses" in extra:
            variants.update({f"loss_{loss}": with_distill(plain, loss=loss) for loss in ("reverse_kl", "jsd",
                                                                                          "skew_kl")})
        if "sequence_level" in extra:
            variants["sequence_level"] = with_distill(plain, sequence_fraction=0.5)
        if "on_policy" in extra:
            variants["on_policy"] = with_distill(plain, on_policy_fraction=0.5)
        print(f"best student at <= 1/4 non-embedding parameters: trial {best.number}", flush=True)
        runs = {}
        for name, params in variants.items():
            print(f"{name}:", flush=True)
            runs[name] = summary([run(bench, params, s) for s in seeds])
        result["distillation_gain"] = runs
    result["samples"] = {"teacher": samples(bench.teacher, bench.tokenizer)}
    recommended = study.user_attrs.get("recommended")
    if recommended is not None:
        with tempfile.TemporaryDirectory(prefix="bench-lm-") as tmp:
            run_trial(bench, replay_params(config, study.trials[recommended].params), config.seed + recommended,
                      Path(tmp))
            result["samples"][f"recommended (trial {recommended}), its save_pretrained weights"] = samples(
                hf.load(Path(tmp) / FOLDER), bench.tokenizer)
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
    lines += ["## The teacher in each runtime", "",
              "Timed in the same rounds as its fp32 ONNX Runtime GenAI build (batch 1, KV cache, greedy):", "",
              "| runtime | bits | ms / token | x the fp32 GenAI build | to first token (ms) | size |",
              "|---|---:|---:|---:|---:|---:|"]
    base = r["runtimes"]["onnxruntime-genai 32"]["latency_ms"]
    for name, m in r["runtimes"].items():
        runtime, bits = name.rsplit(" ", 1)
        lines.append(f"| {runtime} | {bits} | {m['latency_ms']:.3f} | {base / m['latency_ms']:.2f}x | "
                     f"{m['ttft_ms']:.2f} | {human_bytes(m['size_bytes'])} |")
    lines.append("")
    target = r["targets"]
    if target.get("int4_baseline"):
        best = target["fastest_within_10pct"]
        lines += ["## Targets", "",
                  f"The teacher's own int4 build (trial {target['int4_baseline']['trial']}) runs "
                  f"{target['int4_vs_fp32']:.2f}x as fast per token as its fp32 build, at "
                  f"{target['int4_baseline']['perplexity'] / t['perplexity'] - 1:+.1%} perplexity.", ""]
        if best is None:
            lines += ["No distilled member is within 10 % of the teacher's perplexity: **target missed**.", ""]
        else:
            lines += [f"The fastest distilled member within 10 % of the teacher's validation perplexity is trial "
                      f"{best['trial']} ({best['perplexity'] / t['perplexity'] - 1:+.1%}): "
                      f"{target['x_faster_than_int4']:.2f}x as fast per token as the int4 build — target (>= 1.5x) "
                      f"**{'met' if target['met'] else 'missed'}**.", ""]
    gain = r["distillation_gain"]
    if isinstance(gain, str):
        lines += ["## Distillation gain", "", gain, ""]
    else:
        b = r["best_quarter"]
        seeds = len(next(iter(gain.values()))["runs"])
        lines += [f"## Distillation gain ({seeds} seed(s), the same tokens)", "",
                  f"Trial {b['trial']}: {b['non_embedding_params']:,.0f} non-embedding parameters "
                  f"({b['non_embedding_params'] / t['non_embedding_params']:.0%} of the teacher's).", "",
                  "| | val ppl | test ppl | vs without the teacher (test) | vs teacher (test) | s / trial |",
                  "|---|---:|---:|---:|---:|---:|"]
        alone = gain["without_teacher"]["test_perplexity"]["mean"]
        for name, s in gain.items():
            lines.append(f"| {name.replace('_', ' ')} | {s['perplexity']['mean']:.2f} ± {s['perplexity']['sd']:.2f} | "
                         f"{s['test_perplexity']['mean']:.2f} ± {s['test_perplexity']['sd']:.2f} | "
                         f"{s['test_perplexity']['mean'] / alone - 1:+.1%} | "
                         f"{s['test_perplexity']['mean'] / t['test_perplexity'] - 1:+.1%} | "
                         f"{s['seconds']['mean']:.0f} |")
        taught = min((s["test_perplexity"]["mean"], n) for n, s in gain.items() if n != "without_teacher")
        cached, live = (gain[k]["test_perplexity"]["mean"] for k in ("forward_kl_T2", "forward_kl_T2_live"))
        lines += ["", f"Best with the teacher: {taught[1].replace('_', ' ')}, {1 - taught[0] / alone:.1%} lower test "
                  f"perplexity than without it — target (>= 5 %) **{'met' if taught[0] <= 0.95 * alone else 'missed'}"
                  f"**. Cached against live at T = 2: {cached / live - 1:+.2%} — target (within 1 %) "
                  f"**{'met' if abs(cached / live - 1) <= 0.01 else 'missed'}**.", ""]
    lines += ["## Samples (greedy, 40 tokens)", ""]
    for who, texts in r["samples"].items():
        lines += [f"**{who}**", ""] + [f"- {text!r}" for text in texts.values()] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
