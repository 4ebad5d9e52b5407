"""A user's file of rows: CSV (with a header), JSON lines or Parquet, read as column -> value mappings, a row at a
time (a file larger than memory passes through), strictly (a stray quote or comma is an error naming the line, not
rows merged)."""

from __future__ import annotations

import bz2
import csv
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from squeezer.search.errors import ConfigError

ROW_SUFFIXES = (".csv", ".jsonl", ".parquet", ".csv.bz2", ".jsonl.bz2")
PARQUET_BATCH = 10_000


def read_rows(path: Path, key: str, holding: str) -> list[dict[str, Any]]:
    """Every row of the file (``iter_rows``)."""
    return list(iter_rows(path, key, holding))


def iter_rows(path: Path, key: str, holding: str) -> Iterator[dict[str, Any]]:
    """The rows of a .csv, .jsonl (either may be .bz2-compressed) or .parquet file, one at a time, each a mapping
    of column to value; ``holding`` says what the file should hold, for the error when it is missing."""
    if not path.is_file():
        raise ConfigError(key, f"file not found; give a .csv, .jsonl or .parquet file with {holding}", str(path))
    if path.suffix == ".parquet":
        yield from _parquet_rows(path, key)
        return
    jsonl = ".jsonl" in path.suffixes
    try:
        with (bz2.open if path.suffix == ".bz2" else open)(path, "rt", encoding="utf-8", newline="") as handle:
            yield from (_json_lines(handle, path, key) if jsonl else _csv_rows(handle, path, key))
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ConfigError(key, f"cannot read it as {'JSON lines' if jsonl else 'CSV'} text "
                          f"({type(err).__name__}: {str(err).splitlines()[0]})", str(path)) from None


def _parquet_rows(path: Path, key: str) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq

        batches = pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH)
        for batch in batches:
            yield from batch.to_pylist()
    except ImportError as err:
        raise ConfigError(key, f"needs {err.name or 'pyarrow'} to read Parquet (pip install pyarrow)",
                          str(path)) from None
    except Exception as err:  # noqa: BLE001 - not Parquet, truncated: unreadable input
        raise ConfigError(key, f"cannot read it as Parquet ({type(err).__name__}: {str(err).splitlines()[0]})",
                          str(path)) from None


def _json_lines(lines: Iterable[str], path: Path, key: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, 1):
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
        yield row


def _csv_rows(lines: Iterable[str], path: Path, key: str) -> Iterator[dict[str, Any]]:
    """Rows of a CSV file with a header; strict, so an unclosed quote is an error rather than rows merged into one
    field, and every row must have the header's columns."""
    reader = csv.DictReader(lines, strict=True)
    try:
        for row in reader:
            if None in row or None in row.values():  # DictReader's marks of too many or too few fields
                fields = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                raise ConfigError(key, f"line {reader.line_num} has {fields} fields, the header "
                                  f"{len(reader.fieldnames or [])} (a stray comma or quote?)", str(path))
            yield row
    except csv.Error as err:
        raise ConfigError(key, f"is not valid CSV at line {reader.line_num} ({err}; an unclosed quote?)",
                          str(path)) from None


__all__ = ["ROW_SUFFIXES", "iter_rows", "read_rows"]
