"""Language-model text and teacher outputs larger than the memory a study may use.

    python experiments/bench_lm_beyond_ram.py      # needs root (a memory cgroup); ~2 GB of text, ~10 GB of disk

1. **Text.** A corpus of ``--text-gb`` of text is made from the King James Bible that ships here (data/kjv: its
   chapters repeated, each copy's verses shuffled, written as JSON lines), then ``squeezer.search.data.lm.load``
   tokenizes it (the KJV teacher's BPE tokenizer, blocks of 128) inside a Linux memory cgroup capped at
   ``--text-cap-gib`` (swap included; the kernel kills the process if it holds more): documents streamed a batch at a
   time into one token file, then copied into the training blocks in the held-out order, memory-mapped.
2. **Teacher outputs.** A study (``squeezer search``, one trial) whose teacher's top-32 outputs on its training text
   take ``--cache-gib`` on disk, run inside a cgroup capped at ``--cache-cap-mib``: the outputs computed a batch at a
   time into memory-mapped files, then a student distilled from them (random blocks read from the files) and deployed
   in ONNX Runtime GenAI. Its teacher is a small Llama with random weights and a 512-token BPE vocabulary trained here
   on the KJV text, made here: what is measured is memory, not quality (a trained teacher's outputs take the same bytes
   per token whatever its vocabulary — top-32 logits and ids and the rest's statistics, 280 bytes — but the KJV
   teacher's 4 k vocabulary makes them about 8x slower to compute, about half an hour per GiB on this CPU alone).

Records, per step, the cgroup's peak memory (page cache included: the kernel reclaims it under the cap), the largest
process RSS (mapped file pages included), whether the kernel killed anything, the sizes on disk and the time.
Writes results/lm_beyond_ram.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench_streaming import Cgroup
from lm_teacher import train_tokenizer

HERE = Path(__file__).resolve().parent
KJV, TEACHER = HERE.parent / "data" / "kjv", HERE.parent / "data" / "lm_teacher"

TOKENIZE = """
import json, sys, time
from pathlib import Path
from squeezer.search.config.data_section import data_section
from squeezer.search.data import lm
from squeezer.search.models import causal
_, tokenizer = causal.load_teacher(Path(sys.argv[1]), "teacher")
spec = data_section({"path": sys.argv[2], "val_path": sys.argv[3], "test_path": sys.argv[4], "block_size": 128},
                    Path("."), language_model=True)
started = time.monotonic()
splits = lm.load(spec, 0, tokenizer)
print(json.dumps({"seconds": time.monotonic() - started, "train_blocks": list(splits.train.shape),
                  "train_tokens": int(splits.train.numel()), "documents": list(splits.documents),
                  "folder": str(splits.folder)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE.parent / "data" / "beyond_ram")
    parser.add_argument("--text-gb", type=float, default=2.0)
    parser.add_argument("--text-cap-gib", type=float, default=1.0)
    parser.add_argument("--cache-gib", type=float, default=1.5)
    parser.add_argument("--cache-cap-mib", type=float, default=1024)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "lm_beyond_ram.json")
    parser.add_argument("--skip-text", action="store_true", help="only the teacher-output step")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict = json.loads(args.out.read_text()) if args.skip_text and args.out.is_file() else {}
    results["settings"] = {k: str(v) for k, v in vars(args).items()}
    if not args.skip_text:
        corpus = corpus_of(args.work / "corpus.jsonl", int(args.text_gb * 1e9))
        shutil.rmtree(args.work / "cache-text", ignore_errors=True)
        results["text"] = capped(int(args.text_cap_gib * 2**30), [
            sys.executable, "-c", TOKENIZE, str(TEACHER), str(corpus), str(KJV / "validation.jsonl"),
            str(KJV / "test.jsonl")], {"SQUEEZER_CACHE": str(args.work / "cache-text")})
        results["text"]["text_bytes"] = corpus.stat().st_size
        results["text"]["token_files_bytes"] = du(args.work / "cache-text")
        print(json.dumps(results["text"], indent=1), flush=True)
    results["outputs"] = outputs_step(args)
    print(json.dumps(results["outputs"], indent=1), flush=True)
    table = render(results)
    print(table)
    args.out.write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(table + "\n")
    return 0


def corpus_of(path: Path, size: int) -> Path:
    """``size`` bytes of KJV chapters as JSON lines: the chapters again and again, each copy's verses shuffled (made
    once; kept)."""
    if path.is_file() and path.stat().st_size >= size:
        return path
    chapters = [json.loads(line)["text"] for line in (KJV / "train.jsonl").read_text().splitlines()]
    rng, written = random.Random(0), 0
    with open(path, "w", encoding="utf-8") as out:
        while written < size:
            for chapter in rng.sample(chapters, len(chapters)):
                verses = chapter.split(". ")
                rng.shuffle(verses)
                line = json.dumps({"text": ". ".join(verses)}) + "\n"
                out.write(line)
                written += len(line.encode())
    return path


def outputs_step(args: argparse.Namespace) -> dict:
    """A one-trial study whose teacher's cached outputs take ``--cache-gib``, under ``--cache-cap-mib``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    work = args.work / "outputs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    chapters = [json.loads(line)["text"] for line in (KJV / "train.jsonl").read_text().splitlines()]
    tokenizer = train_tokenizer(chapters, 512)  # the KJV teacher's recipe, a smaller vocabulary
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(work / "teacher")
    tokenizer.save_pretrained(work / "teacher")
    per_token = 32 * (2 + 4) + 2 * 11 * 4  # top-32 logits (fp16) and ids (int32), the rest's 2 x 11 statistics
    per_byte = len(tokenizer(chapters[0])["input_ids"]) / len(chapters[0].encode())  # this vocabulary's tokens
    wanted = int(args.cache_gib * 2**30 / per_token / per_byte)
    with open(work / "train.jsonl", "w", encoding="utf-8") as out:
        written, i = 0, 0
        while written < wanted:
            line = json.dumps({"text": chapters[i % len(chapters)]}) + "\n"
            out.write(line)
            written, i = written + len(line.encode()), i + 1
    experiment = {
        "name": "beyond-ram", "seed": 0, "teacher": {"hf": "teacher"},
        "data": {"path": "train.jsonl", "val_path": str(KJV / "validation.jsonl"),
                 "test_path": str(KJV / "test.jsonl"), "block_size": 128},
        "student": {"family": "smaller", "layers": 1},
        "pipeline": [{"lm_distill": {"steps": 200, "eval_every": 100, "loss": "forward_kl"}},
                     {"lm_quantize": {"bits": 32}}],
        "search": {"trials": 1, "sampler": "random"},
        "training": {"batch_size": 16},
        "measure": {"repeats": 5, "warmup": 2, "batch": 4, "prompt_tokens": 16, "new_tokens": 16},
    }
    (work / "experiment.yaml").write_text(yaml.safe_dump(experiment))
    result = capped(int(args.cache_cap_mib * 2**20), [
        sys.executable, "-m", "squeezer.search.cli", "search", str(work / "experiment.yaml"),
        "--storage", f"sqlite:///{work / 'squeezer.db'}", "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"],
        {"SQUEEZER_CACHE": str(work / "cache"), "SQUEEZER_PROGRESS": "plain"}, cwd=work)
    result["cache_bytes"] = du(work / "cache" / "outputs")
    result["text_bytes"] = (work / "train.jsonl").stat().st_size
    return result


def capped(cap: int, command: list[str], env: dict[str, str], cwd: Path | None = None) -> dict:
    """Run ``command`` in a fresh memory cgroup capped at ``cap`` bytes; what it cost."""
    import os

    group = Cgroup(cap)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    try:
        done = subprocess.run(command, env={**os.environ, **env}, preexec_fn=group.enter, capture_output=True,
                              text=True, cwd=cwd)
        seconds = time.monotonic() - started
        peak, kills = group.peak(), group.kills()
    finally:
        group.remove()
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = done.stdout.strip().splitlines()
    return {"exit": done.returncode, "seconds": round(seconds, 1), "cap_bytes": cap, "cgroup_peak_bytes": peak,
            "peak_rss_bytes": rss * 1024 if rss > before else None, "oom_kills": kills,
            "stdout_tail": out[-12:], "stderr_tail": done.stderr.strip().splitlines()[-12:]}


def du(folder: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0


def render(r: dict) -> str:
    gib, mib = 2**30, 2**20
    lines = ["| step | data | on disk | cap | cgroup peak (page cache included) | largest RSS | OOM kills | exit | "
             "time |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if "text" in r:
        t = r["text"]
        lines.append(f"| tokenize the text | {t['text_bytes'] / 1e9:.2f} GB of text | "
                     f"{t['token_files_bytes'] / gib:.2f} GiB of blocks | {t['cap_bytes'] / gib:.2f} GiB | "
                     f"{t['cgroup_peak_bytes'] / gib:.2f} GiB | "
                     f"{(t['peak_rss_bytes'] or 0) / gib:.2f} GiB | {t['oom_kills']} | {t['exit']} | "
                     f"{t['seconds'] / 60:.1f} min |")
    o = r["outputs"]
    lines.append(f"| teacher top-32 cache, distil one student, deploy | {o['text_bytes'] / 1e6:.1f} MB of text | "
                 f"{o['cache_bytes'] / gib:.2f} GiB of teacher outputs | {o['cap_bytes'] / mib:.0f} MiB | "
                 f"{o['cgroup_peak_bytes'] / mib:.0f} MiB | {(o['peak_rss_bytes'] or 0) / mib:.0f} MiB | "
                 f"{o['oom_kills']} | {o['exit']} | {o['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
