"""Numeric tables as users keep them: a CSV or Parquet file of feature columns and a label column. A CSV counts as a
table when no ``text_column`` is named and every column but the label holds numbers (else it is text)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from squeezer.search.errors import ConfigError

SNIFFED_ROWS = 50  # rows read to tell a numeric table from text


def is_table(spec: Mapping[str, Any]) -> bool:
    """Whether ``spec['path']`` is a numeric table: a Parquet file or a CSV for which no text column is named, the
    CSV's columns other than the label all numbers (in its first rows)."""
    path = Path(str(spec.get("path") or ""))
    if "image_column" in spec:
        return False  # a file listing images (folders.is_listed)
    if "feature_columns" in spec:
        return True
    if path.suffix == ".parquet":
        return "text_column" not in spec  # a Parquet file of texts names its text column
    if path.suffix != ".csv" or "text_column" in spec or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            head = "".join(handle.readline() for _ in range(SNIFFED_ROWS + 1))
        rows = list(csv.DictReader(io.StringIO(head)))
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    label = str(spec.get("label_column", "label"))
    if rows and label not in rows[0]:
        return "label_column" in spec  # a table whose named label is missing: the table reader says so
    features = [c for c in (rows[0] if rows else {}) if c != label and c is not None]
    return bool(rows and features) and all(_number(row.get(c)) for row in rows for c in features)


def read_table(path: Path, key: str, label_column: str, feature_columns: list[str] | None) -> tuple[np.ndarray,
                                                                                                      np.ndarray]:
    """The feature columns (by name, or every column but the label) as float32 (N, F), and the labels."""
    import pandas as pd

    if not path.is_file():
        raise ConfigError(key, "file not found; give a .csv or .parquet table", str(path))
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except ImportError as err:
        raise ConfigError(key, f"needs {err.name or 'pyarrow'} to read Parquet (pip install pyarrow)",
                          str(path)) from None
    except Exception as err:  # noqa: BLE001 - the user's file: any parser error is unreadable input
        raise ConfigError(key, f"cannot be read as a table ({type(err).__name__}: "
                          f"{(str(err).strip().splitlines() or [''])[0]})", str(path)) from None
    if label_column not in frame.columns:
        raise ConfigError("data.label_column", f"is not a column of {path.name}; its columns are "
                          f"{list(map(str, frame.columns))[:12]}", label_column)
    columns = feature_columns if feature_columns is not None else [c for c in frame.columns if c != label_column]
    missing = [c for c in columns if c not in frame.columns]
    if missing or not columns:
        raise ConfigError("data.feature_columns", f"must name columns of {path.name}; missing {missing}" if missing
                          else f"{path.name} has no column besides the label", columns)
    for column in columns:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            raise ConfigError("data.feature_columns", f"column {column!r} of {path.name} must hold numbers "
                              f"(it holds {frame[column].dtype})", column)
    x = frame[columns].to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x).all(1))
        raise ConfigError(key, f"must hold a finite number in every feature cell; {len(rows)} row(s) do not (first: "
                          f"row {rows[0] + 1})", str(path))
    labels = frame[label_column]
    if labels.isna().any():
        raise ConfigError("data.label_column", f"must hold a label in every row of {path.name}",
                          f"{int(labels.isna().sum())} empty")
    y = labels.to_numpy()
    if not pd.api.types.is_numeric_dtype(labels):  # class names, as text
        y = np.asarray([str(v) for v in y])
    return x.astype(np.float32), y


def _number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


__all__ = ["is_table", "read_table"]
