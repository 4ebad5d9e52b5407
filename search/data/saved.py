"""Hugging Face ``datasets`` folders, as ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk`` writes them: read by
``datasets.load_from_disk`` (Arrow files, memory-mapped). A ``DatasetDict``'s ``train`` split is the data and its
``test`` split, if there is one, the test data. Columns by name: the label (``label_column``, default ``label``; a
``ClassLabel``'s names are the class names), and the text (``text_column``, default ``text``) or the image
(``image_column``, default ``image``). Images are decoded once into the same memory-mapped cache as image
folders."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from squeezer.search.data.folders import GRAY_MODES, decoded, reason
from squeezer.search.data.text import tokenized
from squeezer.search.errors import ConfigError

MARKERS = ("dataset_dict.json", "state.json")
STREAM_BATCH = 1000  # rows read at once from a large text dataset


def is_saved(path: Any) -> bool:
    """Whether ``path`` is a folder ``save_to_disk`` wrote."""
    return bool(path) and Path(path).is_dir() and any((Path(path) / m).is_file() for m in MARKERS)


def features(path: Path) -> dict[str, Any]:
    """The column types the folder declares (of its ``train`` split, for a ``DatasetDict``), without loading it."""
    where = path / "train" if (path / "dataset_dict.json").is_file() else path
    try:
        return json.loads((where / "dataset_info.json").read_text()).get("features") or {}
    except (OSError, ValueError):
        return {}


def is_text(path: Path, text_column: str) -> bool:
    """Whether a saved dataset holds texts: its text column is a string column."""
    column = features(path).get(text_column) or {}
    return column.get("_type") == "Value" and column.get("dtype") in ("string", "large_string")


def load(path: Path, key: str) -> tuple[Any, Any]:
    """The training ``Dataset`` and the test one (None if the folder has no ``test`` split)."""
    try:
        from datasets import Dataset, DatasetDict, load_from_disk
    except ImportError:
        raise ConfigError(key, "is a Hugging Face datasets folder: pip install datasets", str(path)) from None
    try:
        loaded = load_from_disk(str(path))
    except Exception as err:  # noqa: BLE001 - a user's folder: missing or truncated Arrow files, another version
        raise ConfigError(key, f"is not a datasets folder that loads ({reason(err)})", str(path)) from None
    if isinstance(loaded, Dataset):
        return loaded, None
    if not isinstance(loaded, DatasetDict) or "train" not in loaded:
        raise ConfigError(key, f"needs a train split; it has {sorted(loaded)}", str(path))
    return loaded["train"], loaded.get("test")


def texts(path: Path, key: str, text: str, label: str) -> tuple[tuple[list[str], np.ndarray],
                                                               tuple[list[str], np.ndarray] | None]:
    """A text dataset's texts and labels (columns ``text`` and ``label``): training, and test if the folder has a test
    split."""
    train, test = load(path, key)
    out = []
    for part in (train, test):
        if part is not None:
            _columns(part, {"data.text_column": text, "data.label_column": label}, path)
            out.append(([str(t or "").strip() for t in part[text]], labels(part, label)))
    return out[0], out[1] if len(out) > 1 else None


def text_bytes(path: Path, key: str) -> int:
    """The bytes of a text dataset's Arrow files: what reading its texts into memory would take, about."""
    return sum(Path(f["filename"]).stat().st_size for part in load(path, key) if part is not None
               for f in part.cache_files)


def streamed_texts(path: Path, key: str, text: str, label: str, tokenizer: Any, max_length: int,
                   truncation: str = "head") -> tuple[tuple[np.ndarray, np.ndarray],
                                                      tuple[np.ndarray, np.ndarray] | None]:
    """A large text dataset's token ids (memory-mapped) and labels, read a batch of rows at a time and tokenized a
    chunk at a time (``text.tokenized``): training, and test if the folder has a test split."""
    train, test = load(path, key)
    out = []
    for name, part in (("train", train), ("test", test)):
        if part is None:
            continue
        _columns(part, {"data.text_column": text, "data.label_column": label}, path)
        names = getattr(part.features[label], "names", None)
        pairs = ((str(t or "").strip(), names[y] if names and y is not None else y)
                 for batch in part.iter(batch_size=STREAM_BATCH)
                 for t, y in zip(batch[text], batch[label], strict=True))
        source = "|".join(f"{f['filename']}|{Path(f['filename']).stat().st_mtime_ns}" for f in part.cache_files)
        out.append(tokenized(pairs, path, f"{source}|{name}|{text}|{label}", tokenizer, max_length,
                             truncation))
    return out[0], out[1] if len(out) > 1 else None


def images(path: Path, key: str, image: str, label: str, size: tuple[int, int] | None,
           channels: int | None) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """An image dataset's pixels (N, C, H, W, ``uint8``, memory-mapped) and class names (columns ``image`` and
    ``label``): training, and test if the folder has a test split."""
    train, test = load(path, key)
    parts = [(name, part) for name, part in (("train", train), ("test", test)) if part is not None]
    for _, part in parts:
        _columns(part, {"data.image_column": image, "data.label_column": label}, path)
    shape = _shape([part for _, part in parts], image, key, path, size, channels)
    out = []
    for name, part in parts:
        source = _Images(str(path), name if (path / "dataset_dict.json").is_file() else None, image)
        digest = hashlib.sha256(f"{sorted(f['filename'] for f in part.cache_files)}|{image}|{shape}".encode())
        for cached in part.cache_files:
            stat = Path(cached["filename"]).stat()
            digest.update(f"{stat.st_size}|{stat.st_mtime_ns}".encode())
        out.append((decoded(source, digest.hexdigest()[:20], len(part), shape, key, f"{path} ({name})"),
                    labels(part, label)))
    return out[0], out[1] if len(out) > 1 else None


def labels(part: Any, column: str) -> np.ndarray:
    """A label column: class names where it is a ``ClassLabel``, else its values."""
    values = np.asarray(part[column])
    names = getattr(part.features[column], "names", None)
    return np.asarray(names, dtype=object)[values].astype(str) if names else values


def _columns(part: Any, wanted: dict[str, str], path: Path) -> None:
    for key, column in wanted.items():
        if column not in part.column_names:
            raise ConfigError(key, f"is not a column of the dataset in {path}; its columns are {part.column_names}",
                              column)


def _shape(parts: list[Any], column: str, key: str, path: Path, size: tuple[int, int] | None,
           channels: int | None) -> tuple[int, int, int]:
    """The shape the images decode to, from their headers: ``size`` (H, W) or their one size; ``channels`` or 1
    when every image is grayscale, else 3."""
    from datasets import Image as ImageFeature
    from PIL import Image, UnidentifiedImageError

    if not isinstance(parts[0].features[column], ImageFeature):
        raise ConfigError("data.image_column", f"must name an Image column; {column!r} holds "
                          f"{parts[0].features[column]}", column)
    modes, sizes = set(), set()
    for part in parts:
        for i, cell in enumerate(part.cast_column(column, ImageFeature(decode=False))[column]):
            try:
                with Image.open(io.BytesIO(cell["bytes"]) if cell.get("bytes") else cell["path"]) as header:
                    modes.add(header.mode)
                    sizes.add(header.size)
            except (OSError, UnidentifiedImageError, ValueError, TypeError) as err:
                raise ConfigError(key, f"cannot read image {i} of the dataset ({reason(err)})", str(path)) from None
    if size is None and len(sizes) > 1:
        raise ConfigError("data.image_size", f"is needed: the images have {len(sizes)} sizes (e.g. "
                          f"{sorted(sizes)[:3]} as width x height); set image_size: [H, W] to resize them", None)
    width, height = (size[1], size[0]) if size else next(iter(sizes))
    return channels or (1 if modes <= GRAY_MODES else 3), height, width


class _Images:
    """Image ``i`` of a saved dataset (its split ``part``, or the dataset itself), as a PIL image; the dataset is
    opened (memory-mapped) once per process, so DataLoader workers can call it."""

    def __init__(self, path: str, part: str | None, column: str) -> None:
        self.path, self.part, self.column = path, part, column
        self._data: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}

    def __call__(self, i: int) -> Any:
        if self._data is None:
            from datasets import load_from_disk

            loaded = load_from_disk(self.path)
            self._data = loaded if self.part is None else loaded[self.part]
        return self._data[i][self.column]

    def name(self, i: int) -> str:
        return f"{i} of {self.path}"


__all__ = ["images", "is_saved", "is_text", "labels", "load", "streamed_texts", "text_bytes", "texts"]
