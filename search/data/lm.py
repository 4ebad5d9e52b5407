"""Text for causal language models (``data.spec.LmText``): documents read from the user's files, held out by
document, tokenized once by the teacher's tokenizer and cut into blocks of ``block_size`` tokens (documents packed
one after another, each ended by the end-of-text token); prompt/response pairs one to a block, padded, with the
loss on the response tokens only (the tokenizer's chat template around the prompt when it has one)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from squeezer.search.data import saved
from squeezer.search.data.arrays import NpyWriter, file_stamp, open_mapped
from squeezer.search.data.rows import ROW_SUFFIXES, iter_rows
from squeezer.search.data.spec import LmText
from squeezer.search.defaults import cache_dir
from squeezer.search.errors import ConfigError

TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class LmSplits:
    """Token blocks ``[N, block_size]`` of each part, with the mask of the tokens whose prediction counts (None:
    every token; prompt/response pairs: the response's). Memory-mapped from ``folder`` (``load`` tokenized them
    into it once); pickled ``by_path`` (``sent_by_path``), they travel as that folder's path, mapped again where
    they are unpickled."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    train_mask: torch.Tensor | None
    val_mask: torch.Tensor | None
    test_mask: torch.Tensor | None
    vocab_size: int
    pad_id: int
    documents: tuple[int, int, int]  # per part
    folder: Path  # where the parts are mapped from
    digest: str   # ``fingerprint``, computed once where they were written
    by_path: bool = False

    def fingerprint(self) -> str:
        """A digest of the token ids of every part (what the teacher's cached outputs are keyed by)."""
        return self.digest

    def sent_by_path(self) -> LmSplits:
        """These splits, pickled as their folder's path (worker processes of this machine): not copied."""
        return dataclasses.replace(self, by_path=True)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.by_path:
            state.update(dict.fromkeys(PARTS, None))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("by_path"):
            state.update(_mapped(Path(state["folder"])))
        self.__dict__.update(state)


PARTS = ("train", "val", "test", "train_mask", "val_mask", "test_mask")
PART_NAMES = ("train", "val", "test")
META = "meta.json"
VERSION = 1             # of the files' layout
CHUNK_BYTES = 8 << 20   # text read from a file at a time
BATCH_DOCUMENTS = 512   # documents tokenized at a time


def documents(spec: LmText) -> Iterator[Any]:
    """The documents of ``spec.path``, one at a time (a file larger than memory is read a chunk at a time): texts,
    or (prompt, response) pairs."""
    path, key = spec.path, spec.key
    pairs = spec.prompt_column is not None
    if path.is_dir() and not saved.is_saved(path):
        files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file())
        if not files:
            raise ConfigError(key, f"holds no text files ({', '.join(TEXT_SUFFIXES)})", str(path))
        yield from (text for p in files if (text := _read(p, key).strip()))
        return
    if path.suffix in TEXT_SUFFIXES:
        yield from (part.strip() for part in _paragraphs(path, key) if part.strip())
        return
    columns = [spec.prompt_column, spec.response_column] if pairs else [spec.text_column]
    if saved.is_saved(path):  # a datasets folder: Arrow files, memory-mapped, read a row at a time
        train, _ = saved.load(path, key)
        missing = [c for c in columns if c not in train.column_names]
        if missing:
            raise ConfigError(f"data.{_setting(spec, missing[0])}", f"is not a column of {path.name} (it has "
                              f"{train.column_names})", missing[0])
        rows: Iterable[dict[str, Any]] = ({c: train[i][c] for c in columns} for i in range(len(train)))
    elif path.name.endswith(ROW_SUFFIXES):
        rows = iter_rows(path, key, f"a text column ({spec.text_column})")
    else:
        raise ConfigError(key, "must be a .txt file, a folder of them, a .csv / .jsonl / .parquet file or a datasets "
                          "folder", str(path))
    for number, row in enumerate(rows, 1):
        missing = [c for c in columns if c not in row]
        if missing:
            raise ConfigError(f"data.{_setting(spec, missing[0])}", f"is not a column of {path.name} (row {number} "
                              f"has {sorted(row)})", missing[0])
        values = [str(row[c] or "").strip() for c in columns]
        if all(values):
            yield tuple(values) if pairs else values[0]


def _paragraphs(path: Path, key: str) -> Iterator[str]:
    """The text of ``path`` split at blank lines (two newlines), read ``CHUNK_BYTES`` at a time."""
    carry = ""
    try:
        with open(path, encoding="utf-8") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                parts = (carry + chunk).split("\n\n")
                carry = parts.pop()
                yield from parts
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(key, f"cannot be read as UTF-8 text ({type(err).__name__})", str(path)) from None
    yield carry


def _setting(spec: LmText, column: str) -> str:
    return {spec.prompt_column: "prompt_column", spec.response_column: "response_column"}.get(column, "text_column")


def _read(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(key, f"cannot be read as UTF-8 text ({type(err).__name__})", str(path)) from None


def load(spec: LmText, seed: int, tokenizer: Any) -> LmSplits:
    """The blocks of each part: ``spec.val`` / ``spec.test`` where given, else documents held out by ``seed``.

    Tokenized once into files under the cache (keyed by the files, the tokenizer and the settings), a batch of
    documents at a time, and memory-mapped: a corpus larger than memory is read, tokenized and trained on without
    ever being held whole."""
    folder = cache_dir() / "lm-text" / _key(spec, seed, tokenizer)
    if not (folder / META).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tokenizing-"))
        try:
            _tokenize(spec, seed, tokenizer, work)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    meta = json.loads((folder / META).read_text())
    return LmSplits(**_mapped(folder), vocab_size=len(tokenizer), pad_id=meta["pad_id"],
                    documents=tuple(meta["documents"]), folder=folder, digest=meta["digest"])


def _key(spec: LmText, seed: int, tokenizer: Any) -> str:
    """What the tokenized blocks depend on: the files (name, size, time), the tokenizer, the settings, the seed."""
    roots = [p for p in (spec.path, spec.val and spec.val.path, spec.test and spec.test.path) if p is not None]
    stamps = [file_stamp(f) if f.exists() else f"{f}|missing"  # reading it says what is wrong with it
              for p in roots for f in (sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p])]
    settings = [spec.block_size, spec.val_fraction, spec.test_fraction, spec.train_size, spec.text_column,
                spec.prompt_column, spec.response_column, seed, VERSION]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    template = getattr(tokenizer, "chat_template", None) or ""
    special = [tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id, len(tokenizer)]
    digest = hashlib.sha256(json.dumps([stamps, settings, special, template], default=str).encode())
    digest.update(vocabulary.encode())
    return digest.hexdigest()[:20]


def _tokenize(spec: LmText, seed: int, tokenizer: Any, out: Path) -> None:
    """Write each part's blocks (and masks) to ``out`` and ``META``: the documents counted first (held out by
    document, as ``seed`` draws them), then tokenized a batch at a time into one file of every document's tokens,
    then copied into the parts' blocks in the drawn order."""
    given = {"val": spec.val, "test": spec.test}
    count = sum(1 for _ in documents(spec))
    counts = {name: 0 if given[name] is not None else max(1, round(fraction * count)) for name, fraction in
              (("val", spec.val_fraction), ("test", spec.test_fraction))}
    if count - counts["val"] - counts["test"] < 1:
        raise ConfigError(spec.key, f"holds {count} document(s): too few to hold out validation and test text by "
                          "document (give more documents, or data.val_path and data.test_path)", str(spec.path))
    order = np.random.default_rng(seed).permutation(count)
    rows = {"val": order[:counts["val"]], "test": order[counts["val"]:counts["val"] + counts["test"]],
            "train": order[counts["val"] + counts["test"]:]}
    if spec.train_size is not None:
        rows["train"] = rows["train"][:spec.train_size]
    encode = _Encoder(tokenizer, spec)
    tokens = encode.all(documents(spec), out / "documents")
    meta: dict[str, Any] = {"documents": [], "pad_id": int(encode.pad or 0)}
    digest = hashlib.sha256()
    for name in PART_NAMES:
        source, chosen = tokens, rows[name]
        if name != "train" and given[name] is not None:
            source = encode.all(documents(given[name]), out / f"documents-{name}")
            chosen = np.arange(source.count)
        meta["documents"].append(len(chosen))
        source.blocks(chosen, out, name, encode)
        _update(digest, open_mapped(out / f"{name}.npy"))
    meta["digest"] = digest.hexdigest()[:16]
    for leftover in out.glob("documents*"):
        leftover.unlink()
    (out / META).write_text(json.dumps(meta))


class _Encoder:
    """Tokenizes documents a batch at a time: a text into its tokens and the end-of-text token; a pair into its
    prompt (in the chat template) and response, one block, with the response's tokens marked."""

    def __init__(self, tokenizer: Any, spec: LmText) -> None:
        self.tokenizer, self.spec, self.eos = tokenizer, spec, tokenizer.eos_token_id
        self.pairs = spec.prompt_column is not None
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos

    def all(self, docs: Iterable[Any], stem: Path) -> _Tokens:
        """Every document's tokens, in order, into ``stem``.npy (one array), with each one's start
        (``stem``-offsets.npy) and, for pairs, the response mask (``stem``-mask.npy)."""
        starts, total = [0], 0
        with ExitStack() as stack:
            ids = stack.enter_context(NpyWriter(_beside(stem, ".npy"), (None,), np.int64))
            mask = stack.enter_context(NpyWriter(_beside(stem, "-mask.npy"), (None,), np.bool_)) \
                if self.pairs else None
            for batch in _batches(docs, BATCH_DOCUMENTS):
                for row, row_mask in self.encode(batch):
                    ids.append(np.asarray(row, dtype=np.int64))
                    if mask is not None:
                        mask.append(np.asarray(row_mask, dtype=np.bool_))
                    total += len(row)
                    starts.append(total)
        np.save(_beside(stem, "-offsets.npy"), np.asarray(starts, dtype=np.int64))
        return _Tokens(stem, len(starts) - 1)

    def encode(self, batch: list[Any]) -> list[tuple[list[int], list[bool] | None]]:
        t, size = self.tokenizer, self.spec.block_size
        if not self.pairs:
            end = [self.eos] if self.eos is not None else []
            return [(ids + end, None) for ids in t(batch, add_special_tokens=False)["input_ids"]]
        answers = t([response for _, response in batch], add_special_tokens=False)["input_ids"]
        out: list[tuple[list[int], list[bool] | None]] = []
        for (prompt, _), answer in zip(batch, answers, strict=True):
            start = _prompt_ids(t, prompt)
            answer = answer + ([self.eos] if self.eos is not None else [])
            row, mask = (start + answer)[:size], ([False] * len(start) + [True] * len(answer))[:size]
            out.append((row + [self.pad] * (size - len(row)), mask + [False] * (size - len(mask))))
        return out


def _beside(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)


class _Tokens:
    """The documents' tokens ``_Encoder.all`` wrote, by document."""

    def __init__(self, stem: Path, count: int) -> None:
        self.stem, self.count = stem, count

    def blocks(self, rows: np.ndarray, out: Path, part: str, encode: _Encoder) -> None:
        """The blocks of the documents ``rows`` (in that order) into ``out/part``.npy (and ``part``-mask.npy): texts
        packed one after another and cut into blocks, the last partial one dropped; pairs one to a block, those
        whose prompt fills the block left out."""
        ids, starts = open_mapped(_beside(self.stem, ".npy")), np.load(_beside(self.stem, "-offsets.npy"))
        size = encode.spec.block_size
        if encode.pairs:
            mask, kept = open_mapped(_beside(self.stem, "-mask.npy")), 0
            with NpyWriter(out / f"{part}.npy", (None, size), np.int64) as rows_out, \
                    NpyWriter(out / f"{part}-mask.npy", (None, size), np.bool_) as masks_out:
                for doc in rows:
                    row = slice(starts[doc], starts[doc + 1])
                    if mask[row].any():  # the prompt alone fills the block: nothing to learn from it
                        rows_out.append(ids[row][None])
                        masks_out.append(mask[row][None])
                        kept += 1
                if not kept:
                    raise ConfigError("data.block_size", f"leaves no response token in any {part} pair: every "
                                      "prompt is at least a block long", size)
            return
        total = int(sum(int(starts[d + 1] - starts[d]) for d in rows))
        usable = total // size * size
        if usable == 0:
            raise ConfigError("data.block_size", f"is longer than the {part} text ({total} tokens): the {part} "
                              "part must hold at least one block", size)
        with NpyWriter(out / f"{part}.npy", (usable // size, size), np.int64) as blocks:
            carry, written = np.empty(0, dtype=np.int64), 0
            for doc in rows:
                carry = np.concatenate([carry, ids[starts[doc]:starts[doc + 1]]])
                whole = min(len(carry) // size * size, usable - written)
                if whole:
                    blocks.append(carry[:whole].reshape(-1, size))
                    carry, written = carry[whole:], written + whole
                if written == usable:
                    break


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _mapped(folder: Path) -> dict[str, torch.Tensor | None]:
    """Each part's blocks and masks, memory-mapped from ``folder`` (copy-on-write: never written back)."""
    found: dict[str, torch.Tensor | None] = {}
    for name in PART_NAMES:
        found[name] = torch.from_numpy(open_mapped(folder / f"{name}.npy", writable=True))
        mask = folder / f"{name}-mask.npy"
        found[f"{name}_mask"] = torch.from_numpy(open_mapped(mask, writable=True)) if mask.is_file() else None
    return found


def _update(digest: Any, array: np.ndarray, rows: int = 1 << 16) -> None:
    """``digest`` updated with ``array``'s bytes, ``rows`` rows at a time (never the whole copied at once)."""
    for start in range(0, max(len(array), 1), rows):
        digest.update(np.ascontiguousarray(array[start:start + rows]).tobytes())


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
