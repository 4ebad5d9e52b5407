"""Numeric tables as users keep them: a CSV or Parquet file of feature columns and a label column. A CSV counts as a
table when no ``text_column`` is named and every column but the label holds numbers (else it is text). A table larger
than memory is read a chunk of rows at a time into a memory-mapped array."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from squeezer.search.data.arrays import file_stamp, labelled_rows
from squeezer.search.defaults import cache_dir
from squeezer.search.errors import ConfigError

SNIFFED_ROWS = 50  # rows read to tell a numeric table from text
STREAM_BYTES = 1 << 30  # a table file larger than this is read a chunk at a time, never whole
STREAM_ROWS = 100_000


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
    """The feature columns (by name, or every column but the label) as float32 (N, F), and the labels. A file over
    ``STREAM_BYTES`` is read a chunk of rows at a time into a memory-mapped array in the cache (``_streamed``)."""
    if not path.is_file():
        raise ConfigError(key, "file not found; give a .csv or .parquet table", str(path))
    if path.stat().st_size > STREAM_BYTES:
        return _streamed(path, key, label_column, feature_columns)
    frame = next(_frames(path, key, rows=None))
    return _values(frame, 0, path, key, label_column, feature_columns)


def _frames(path: Path, key: str, rows: int | None) -> Iterator[Any]:
    """The table as DataFrames of ``rows`` rows each (one of all rows if None)."""
    import pandas as pd

    try:
        if path.suffix == ".parquet" and rows:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                yield batch.to_pandas()
        elif path.suffix == ".parquet":
            yield pd.read_parquet(path)
        elif rows:
            yield from pd.read_csv(path, chunksize=rows)
        else:
            yield pd.read_csv(path)
    except ImportError as err:
        raise ConfigError(key, f"needs {err.name or 'pyarrow'} to read Parquet (pip install pyarrow)",
                          str(path)) from None
    except Exception as err:  # noqa: BLE001 - the user's file: any parser error is unreadable input
        raise ConfigError(key, f"cannot be read as a table ({type(err).__name__}: "
                          f"{(str(err).strip().splitlines() or [''])[0]})", str(path)) from None


def _values(frame: Any, first: int, path: Path, key: str, label_column: str,
            feature_columns: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """A frame's features (float32) and labels, checked; ``first``: the file row its first row is."""
    import pandas as pd

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
                          f"row {first + rows[0] + 1})", str(path))
    labels = frame[label_column]
    if labels.isna().any():
        raise ConfigError("data.label_column", f"must hold a label in every row of {path.name}",
                          f"{int(labels.isna().sum())} empty")
    y = labels.to_numpy()
    if not pd.api.types.is_numeric_dtype(labels):  # class names, as text
        y = np.asarray([str(v) for v in y])
    return x.astype(np.float32), y


def _streamed(path: Path, key: str, label_column: str, feature_columns: list[str] | None) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """A large table read ``STREAM_ROWS`` rows at a time into ``<cache>/tables/<digest>.npy`` (float32, then
    memory-mapped) and its labels beside it; a later study reads them from there. The digest covers the file's
    name, size and modification time and the columns read."""
    digest = hashlib.sha256(f"{file_stamp(path)}|{label_column}|{feature_columns}".encode()).hexdigest()[:20]
    features = cache_dir() / "tables" / f"{digest}.npy"

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        first = 0
        for frame in _frames(path, key, STREAM_ROWS):
            yield _values(frame, first, path, key, label_column, feature_columns)
            first += len(frame)

    def check(labels: np.ndarray) -> None:
        if not len(labels):
            raise ConfigError(key, "holds no rows", str(path))

    return labelled_rows(features, chunks(), np.float32, check, f"data: reading {path.name} "
                         f"({path.stat().st_size / 2**30:.1f} GiB) a chunk at a time into {features.parent} (once)")


def _number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


__all__ = ["is_table", "read_table"]
