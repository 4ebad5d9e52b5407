"""Datasets by name or from a user's file, split by seed: images and feature tables (``images``), text tokenized
by the teacher's tokenizer (``text``); ``split`` holds what both share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from squeezer.search.data.folders import Folder, decode, find_images, is_listed
from squeezer.search.data.images import FASHION_MNIST_DIR, digits, fashion_mnist, npz, read_idx
from squeezer.search.data import saved, text
from squeezer.search.data.inputs import STANDARDIZE, InputSpec, Standardize
from squeezer.search.data.tables import is_table, read_table
from squeezer.search.data.split import Preview, Shape, Splits, Texts, Tokens, class_indices, given_splits, split
from squeezer.search.data.text import TEXT_KEYS, check_texts, read_texts, tokenize
from squeezer.search.errors import ConfigError

IMAGE_SETS = ("digits", "fashion_mnist")
TEXT_SETS = ("rotten_tomatoes",)


def load(spec: Mapping[str, Any], seed: int, tokenizer: Any = None, ahead: Preview | None = None) -> Splits:
    """Load the dataset a config's ``data`` section names and split it by ``seed``; text is tokenized with
    ``tokenizer`` (the teacher's). ``ahead``: what ``preview`` found (its scanned folders are not scanned again)."""
    scanned = ahead.folders if isinstance(ahead, FolderPreview) else {}
    val_fraction, test_fraction = float(spec.get("val_fraction", 0.1)), float(spec.get("test_fraction", 0.2))
    if spec.get("given"):
        raise ConfigError("data.given", "stands for data passed as Python objects: pass them again "
                          "(compress(train=...))", spec["given"])
    if is_text(spec):
        return _text(spec, seed, tokenizer, val_fraction, test_fraction)
    if spec.get("path"):
        if saved.is_saved(spec["path"]):  # a datasets folder may hold its test split
            train, test = saved.images(spec, "data.path", _size(spec), spec.get("channels"))
        else:
            train, test = _features(spec, "path", scanned.get("path")), None
        if spec.get("test_path"):
            test = _features(spec, "test_path", scanned.get("test_path"))
        train_y, test_y, classes = class_indices(train[1], None if test is None else test[1])
        train = (train[0], train_y)
        if test is not None and test_y is not None:
            test = (test[0], test_y)
        return split(train, test, val_fraction, test_fraction, seed, spec.get("train_size"), classes=classes,
                     standardize=spec.get("standardize", "feature"))
    elif spec.get("name") == "digits":
        train, test = digits(), None
    elif spec.get("name") == "fashion_mnist":
        train, test = fashion_mnist(Path(spec.get("dir") or FASHION_MNIST_DIR))
    else:
        raise ConfigError("data.name", f"must be one of {[*IMAGE_SETS, *TEXT_SETS]}, or set `path` to an .npz, "
                          ".csv or .jsonl file", spec.get("name"))
    return split(train, test, val_fraction, test_fraction, seed, spec.get("train_size"),
                 standardize=spec.get("standardize", "feature"))


@dataclass(frozen=True)
class FolderPreview(Preview):
    """An image folder's preview, with the scans it came from (by data key: ``path``, ``test_path``)."""

    folders: Mapping[str, Folder] = field(default_factory=dict)


def preview(spec: Mapping[str, Any]) -> FolderPreview | None:
    """The shape and class count of an image folder (``data.path`` a directory) or image list, from its files'
    headers: what the models are checked against before the images are decoded. None for other data (read whole by
    ``load``)."""
    if not is_images(spec):
        return None
    folders = {which: find_images(spec, which, _size(spec)) for which in ("path", "test_path") if spec.get(which)
               and (Path(spec[which]).is_dir() or is_listed({**spec, "path": spec[which]}))}
    test = folders.get("test_path")
    _, _, classes = class_indices(folders["path"].labels, None if test is None else test.labels)
    return FolderPreview((folders["path"].channels, *folders["path"].size), len(classes or ()), folders=folders)


def _size(spec: Mapping[str, Any]) -> tuple[int, int] | None:
    size = spec.get("image_size")
    return (size, size) if isinstance(size, int) else None if size is None else tuple(size)


def _features(spec: Mapping[str, Any], which: str, scanned: Folder | None = None) -> tuple[Any, Any]:
    """An image folder (a directory: one sub-folder per class) or image list (``scanned`` already), a table, or an
    .npz of arrays X and y."""
    path, key = Path(spec[which]), f"data.{which}"
    if scanned is not None:
        return decode(scanned, key), scanned.labels
    if saved.is_saved(path):
        return saved.images({**spec, "path": str(path)}, key, _size(spec), spec.get("channels"))[0]
    if is_table({**spec, "path": str(path)}):
        return read_table(path, key, str(spec.get("label_column", "label")), spec.get("feature_columns"))
    if path.is_dir() or is_listed({**spec, "path": str(path)}):
        folder = find_images(spec, which, _size(spec))
        return decode(folder, key), folder.labels
    return npz(path, key)


def is_images(spec: Mapping[str, Any]) -> bool:
    """Whether ``data.path`` is an image folder (of class folders) or a file listing images (``is_listed``)."""
    path = str(spec.get("path") or "")
    return bool(path) and not saved.is_saved(path) and (is_listed(spec) or Path(path).is_dir() and not is_text(spec)
                                                         and not is_table(spec))


def is_text(spec: Mapping[str, Any]) -> bool:
    """Whether the ``data`` section names text: a named text set, or a .csv / .jsonl file that is not a numeric
    table (``tables.is_table``)."""
    path = str(spec.get("path") or "")
    if saved.is_saved(path):
        return saved.is_text(spec)
    if is_listed(spec):
        return False
    return spec.get("name") in TEXT_SETS or path.endswith((".csv", ".jsonl", ".csv.bz2", ".parquet")) \
        and not is_table(spec)


def _text(spec: Mapping[str, Any], seed: int, tokenizer: Any, val_fraction: float, test_fraction: float) -> Splits:
    """Token ids split by ``seed``; the texts themselves travel through the split beside them (``Splits.texts``: what
    the TF-IDF baseline reads), except for a file streamed because it is larger than memory."""
    if tokenizer is None:
        raise ConfigError("teacher", "text data needs a Hugging Face teacher (family: hf), whose tokenizer the "
                          "students share", spec.get("name") or spec.get("path"))
    length, cut = int(spec.get("max_length", 64)), str(spec.get("truncation", "head"))
    test_ids, test_labels, texts, test_texts = None, None, None, None
    if saved.is_saved(spec.get("path")) and saved.text_bytes(spec, "data.path") > text.STREAM_BYTES:
        (ids, labels), test_part = saved.streamed_texts(spec, "data.path", tokenizer, length, cut)
        if test_part is not None:
            test_ids, test_labels = test_part
    elif saved.is_saved(spec.get("path")):
        (texts, labels), test_part = saved.texts(spec, "data.path")
        check_texts(texts, labels, Path(spec["path"]))
        ids = tokenize(texts, tokenizer, length, cut)
        if test_part is not None:
            test_ids, test_labels, test_texts = tokenize(test_part[0], tokenizer, length, cut), test_part[1], \
                test_part[0]
    else:
        ids, labels, texts = _token_ids(spec, "data.path" if spec.get("path") else "data.name", tokenizer, length,
                                        cut)
    if spec.get("test_path"):
        test_ids, test_labels, test_texts = _token_ids({**spec, "path": spec["test_path"]}, "data.test_path",
                                                       tokenizer, length, cut)
    labels, test_y, classes = class_indices(labels, test_labels)
    test = None if test_y is None else (test_ids, test_y)
    if test is not None and test_texts is None:
        texts = None  # the baseline needs every part's texts
    tokens = Tokens(vocab_size=len(tokenizer), pad_id=int(tokenizer.pad_token_id or 0),
                    mask_id=None if tokenizer.mask_token_id is None else int(tokenizer.mask_token_id),
                    special=tuple(sorted(int(i) for i in set(tokenizer.all_special_ids) - {tokenizer.pad_token_id})))
    return split((ids, labels), test, val_fraction, test_fraction, seed, spec.get("train_size"), tokens=tokens,
                 classes=classes, texts=None if texts is None else (texts, test_texts))


def _token_ids(spec: Mapping[str, Any], key: str, tokenizer: Any, length: int, cut: str) -> tuple[Any, Any, Any]:
    """A text file's token ids (memory-mapped, for a file larger than memory), labels and texts (None when
    streamed)."""
    if text.is_large(spec):
        return (*text.streamed(spec, key, tokenizer, length, cut), None)
    texts, labels = read_texts(spec, key)
    return tokenize(texts, tokenizer, length, cut), labels, texts


__all__ = ["FASHION_MNIST_DIR", "IMAGE_SETS", "STANDARDIZE", "FolderPreview", "InputSpec", "Preview", "Shape",
           "Standardize", "TEXT_KEYS", "TEXT_SETS", "Splits", "Texts", "Tokens", "given_splits", "is_images", "is_text",
           "load", "preview", "read_idx"]
