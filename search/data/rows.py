"""A user's file of rows: CSV (with a header), JSON lines or Parquet, read as a list of column -> value mappings,
strictly (a stray quote or comma is an error naming the line, not rows merged)."""

from __future__ import annotations

import bz2
import csv
import io
import json
from pathlib import Path
from typing import Any

from squeezer.search.errors import ConfigError

ROW_SUFFIXES = (".csv", ".jsonl", ".parquet", ".csv.bz2", ".jsonl.bz2")


def read_rows(path: Path, key: str, holding: str) -> list[dict[str, Any]]:
    """The rows of a .csv, .jsonl (either may be .bz2-compressed) or .parquet file, each a mapping of column to value;
    ``holding`` says what the file should hold, for the error when it is missing."""
    if not path.is_file():
        raise ConfigError(key, f"file not found; give a .csv, .jsonl or .parquet file with {holding}", str(path))
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


__all__ = ["ROW_SUFFIXES", "read_rows"]
