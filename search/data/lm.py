"""Text for causal language models (``data.spec.LmText``): documents read from the user's files, held out by
document, tokenized once by the teacher's tokenizer and cut into blocks of ``block_size`` tokens (documents packed
one after another, each ended by the end-of-text token); prompt/response pairs one to a block, padded, with the
loss on the response tokens only (the tokenizer's chat template around the prompt when it has one)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from squeezer.search.data import saved
from squeezer.search.data.rows import ROW_SUFFIXES, iter_rows
from squeezer.search.data.spec import LmText
from squeezer.search.errors import ConfigError

TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class LmSplits:
    """Token blocks ``[N, block_size]`` of each part, with the mask of the tokens whose prediction counts (None:
    every token; prompt/response pairs: the response's)."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    train_mask: torch.Tensor | None
    val_mask: torch.Tensor | None
    test_mask: torch.Tensor | None
    vocab_size: int
    pad_id: int
    documents: tuple[int, int, int]  # per part

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for part in (self.train, self.val, self.test):
            digest.update(part.numpy().tobytes())
        return digest.hexdigest()[:16]


def documents(spec: LmText) -> list[Any]:
    """The documents of ``spec.path``: texts, or (prompt, response) pairs."""
    path, key = spec.path, spec.key
    pairs = spec.prompt_column is not None
    if path.is_dir() and not saved.is_saved(path):
        files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file())
        if not files:
            raise ConfigError(key, f"holds no text files ({', '.join(TEXT_SUFFIXES)})", str(path))
        return [text for p in files if (text := _read(p, key).strip())]
    if path.suffix in TEXT_SUFFIXES:
        return [part.strip() for part in _read(path, key).split("\n\n") if part.strip()]
    columns = [spec.prompt_column, spec.response_column] if pairs else [spec.text_column]
    if saved.is_saved(path):
        train, _ = saved.load(path, key)
        missing = [c for c in columns if c not in train.column_names]
        if missing:
            raise ConfigError(f"data.{_setting(spec, missing[0])}", f"is not a column of {path.name} (it has "
                              f"{train.column_names})", missing[0])
        rows = ({c: train[i][c] for c in columns} for i in range(len(train)))
    elif path.name.endswith(ROW_SUFFIXES):
        rows = iter_rows(path, key, f"a text column ({spec.text_column})")
    else:
        raise ConfigError(key, "must be a .txt file, a folder of them, a .csv / .jsonl / .parquet file or a datasets "
                          "folder", str(path))
    out = []
    for number, row in enumerate(rows, 1):
        missing = [c for c in columns if c not in row]
        if missing:
            raise ConfigError(f"data.{_setting(spec, missing[0])}", f"is not a column of {path.name} (row {number} "
                              f"has {sorted(row)})", missing[0])
        values = [str(row[c] or "").strip() for c in columns]
        if all(values):
            out.append(tuple(values) if pairs else values[0])
    return out


def _setting(spec: LmText, column: str) -> str:
    return {spec.prompt_column: "prompt_column", spec.response_column: "response_column"}.get(column, "text_column")


def _read(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(key, f"cannot be read as UTF-8 text ({type(err).__name__})", str(path)) from None


def load(spec: LmText, seed: int, tokenizer: Any) -> LmSplits:
    """The blocks of each part: ``spec.val`` / ``spec.test`` where given, else documents held out by ``seed``."""
    docs = documents(spec)
    given = {"val": spec.val, "test": spec.test}
    parts = {name: documents(part) for name, part in given.items() if part is not None}
    order = np.random.default_rng(seed).permutation(len(docs))
    counts = {name: 0 if name in parts else max(1, round(fraction * len(docs))) for name, fraction in
              (("val", spec.val_fraction), ("test", spec.test_fraction))}
    if len(docs) - counts["val"] - counts["test"] < 1:
        raise ConfigError(spec.key, f"holds {len(docs)} document(s): too few to hold out validation and test text by "
                          "document (give more documents, or data.val_path and data.test_path)", str(spec.path))
    held = iter(order.tolist())
    for name in ("val", "test"):
        if name not in parts:
            parts[name] = [docs[next(held)] for _ in range(counts[name])]
    train_docs = [docs[i] for i in held]
    if spec.train_size is not None:
        train_docs = train_docs[:spec.train_size]
    blocks = {name: _blocks(items, tokenizer, spec, name) for name, items in
              (("train", train_docs), ("val", parts["val"]), ("test", parts["test"]))}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return LmSplits(blocks["train"][0], blocks["val"][0], blocks["test"][0], blocks["train"][1], blocks["val"][1],
                    blocks["test"][1], vocab_size=len(tokenizer), pad_id=int(pad or 0),
                    documents=(len(train_docs), len(parts["val"]), len(parts["test"])))


def _blocks(items: list[Any], tokenizer: Any, spec: LmText, part: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    size = spec.block_size
    eos = tokenizer.eos_token_id
    if spec.prompt_column is None:
        ids: list[int] = []
        for text in items:
            ids += tokenizer(text, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        usable = len(ids) // size * size
        if usable == 0:
            raise ConfigError("data.block_size", f"is longer than the {part} text ({len(ids)} tokens): the {part} "
                              "part must hold at least one block", size)
        return torch.tensor(ids[:usable], dtype=torch.int64).view(-1, size), None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rows, masks = [], []
    for prompt, response in items:
        start = _prompt_ids(tokenizer, prompt)
        answer = tokenizer(response, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        row = (start + answer)[:size]
        mask = ([False] * len(start) + [True] * len(answer))[:size]
        if not any(mask):
            continue  # the prompt alone fills the block: nothing to learn from it
        rows.append(row + [pad] * (size - len(row)))
        masks.append(mask + [False] * (size - len(mask)))
    if not rows:
        raise ConfigError("data.block_size", f"leaves no response token in any {part} pair: every prompt is at "
                          "least a block long", size)
    return torch.tensor(rows, dtype=torch.int64), torch.tensor(masks, dtype=torch.bool)


@dataclass(frozen=True)
class Question:
    """A task item: the context's tokens, each choice's, and the index of the right one."""

    context: list[int]
    choices: list[list[int]]
    answer: int


def task(path: Path, tokenizer: Any) -> list[Question]:
    """A JSONL of ``{"context": ..., "choices": [...], "answer": ...}`` (the answer a choice's index or its text),
    tokenized: the user's own task, scored by which choice the model finds most likely."""
    questions = []
    for number, row in enumerate(iter_rows(path, "data.task_path", "context, choices and answer columns"), 1):
        context, choices, answer = row.get("context"), row.get("choices"), row.get("answer")
        if not isinstance(context, str) or not isinstance(choices, list) or len(choices) < 2 or not all(
                isinstance(c, str) and c for c in choices):
            raise ConfigError("data.task_path", f"row {number} needs a context (text) and choices (a list of two or "
                              f"more texts)", str(path))
        index = choices.index(answer) if answer in choices else answer
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(choices):
            raise ConfigError("data.task_path", f"row {number}'s answer must be one of its choices or its index",
                              answer)
        questions.append(Question(tokenizer(context, add_special_tokens=False)["input_ids"],
                                  [tokenizer(" " + c.strip(), add_special_tokens=False)["input_ids"] for c in choices],
                                  index))
    if not questions:
        raise ConfigError("data.task_path", "holds no questions", str(path))
    return questions


def _prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt's tokens: in the tokenizer's chat template (the assistant's turn opened) where it has one."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + tokenizer(prompt + "\n", add_special_tokens=False)["input_ids"]


__all__ = ["LmSplits", "Question", "documents", "load", "task"]
