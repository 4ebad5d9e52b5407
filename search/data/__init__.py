"""Datasets by name or from a user's file, split by seed: images and feature tables (``images``), text tokenized
by the teacher's tokenizer (``text``); ``split`` holds what both share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from squeezer.search.data.folders import Folder, decode, listed, scan
from squeezer.search.data.images import FASHION_MNIST_DIR, digits, fashion_mnist, npz, read_idx
from squeezer.search.data import saved, text
from squeezer.search.data.inputs import STANDARDIZE, InputSpec, Standardize
from squeezer.search.data.spec import (Arrays, DataSpec, Digits, FashionMnist, FeatureData, GivenData, ImageFolder,
                                       ImageList, SavedImages, SavedTexts, Table, TextData, TextFile)
from squeezer.search.data.tables import read_table
from squeezer.search.data.split import Preview, Shape, Splits, Texts, Tokens, class_indices, given_splits, split
from squeezer.search.data.text import TEXT_KEYS, check_texts, read_texts, tokenize
from squeezer.search.errors import ConfigError

IMAGE_SETS = ("digits", "fashion_mnist")
TEXT_SETS = ("rotten_tomatoes",)


def load(spec: DataSpec, seed: int, tokenizer: Any = None, ahead: Preview | None = None) -> Splits:
    """Load the data ``spec`` names and split it by ``seed``; text is tokenized with ``tokenizer`` (the teacher's).
    ``ahead``: what ``preview`` found (its scanned folders are not scanned again)."""
    if isinstance(spec, GivenData):
        raise ConfigError("data.given", "stands for data passed as Python objects: pass them again "
                          "(compress(train=...))", spec.digest)
    if isinstance(spec, TextData):
        return _text(spec, seed, tokenizer)
    assert isinstance(spec, FeatureData), type(spec).__name__
    scanned = ahead.folders if isinstance(ahead, FolderPreview) else {}
    classes = None
    if isinstance(spec, Digits):
        train, test = digits(), None
    elif isinstance(spec, FashionMnist):
        train, test = fashion_mnist(spec.dir)
    else:
        if isinstance(spec, SavedImages):  # a datasets folder may hold its test split
            train, test = saved.images(spec.path, spec.key, spec.image_column, spec.label_column, spec.image_size,
                                       spec.channels)
        else:
            train, test = _features(spec, scanned.get(spec.key)), None
        if spec.test is not None:
            test = _features(spec.test, scanned.get(spec.test.key))
        train_y, test_y, classes = class_indices(train[1], None if test is None else test[1])
        train = (train[0], train_y)
        if test is not None and test_y is not None:
            test = (test[0], test_y)
    return split(train, test, spec.val_fraction, spec.test_fraction, seed, spec.train_size, classes=classes,
                 standardize=spec.standardize)


@dataclass(frozen=True)
class FolderPreview(Preview):
    """An image folder's preview, with the scans it came from (by the setting that names them: ``data.path``,
    ``data.test_path``)."""

    folders: Mapping[str, Folder] = field(default_factory=dict)


def preview(spec: DataSpec) -> FolderPreview | None:
    """The shape and class count of an image folder or image list, from its files' headers: what the models are
    checked against before the images are decoded. None for other data (read whole by ``load``)."""
    if not isinstance(spec, (ImageFolder, ImageList)):
        return None
    parts = [spec, *([spec.test] if isinstance(spec.test, (ImageFolder, ImageList)) else [])]
    folders = {part.key: _scan(part) for part in parts}
    test = folders.get(spec.test.key) if spec.test is not None else None
    _, _, classes = class_indices(folders[spec.key].labels, None if test is None else test.labels)
    return FolderPreview((folders[spec.key].channels, *folders[spec.key].size), len(classes or ()),
                         folders=folders)


def _scan(spec: ImageFolder | ImageList) -> Folder:
    if isinstance(spec, ImageList):
        return listed(spec.path, spec.key, spec.image_column, spec.label_column, spec.image_size, spec.channels)
    return scan(spec.path, spec.key, spec.image_size, spec.channels)


def _features(spec: DataSpec, scanned: Folder | None = None) -> tuple[Any, Any]:
    """The inputs and labels of a file of features: an image folder or list (``scanned`` already), a datasets
    folder, a table, or an .npz of arrays X and y."""
    if isinstance(spec, (ImageFolder, ImageList)):
        folder = scanned or _scan(spec)
        return decode(folder, spec.key), folder.labels
    if isinstance(spec, SavedImages):
        return saved.images(spec.path, spec.key, spec.image_column, spec.label_column, spec.image_size,
                            spec.channels)[0]
    if isinstance(spec, Table):
        return read_table(spec.path, spec.key, spec.label_column,
                          None if spec.feature_columns is None else list(spec.feature_columns))
    if isinstance(spec, Arrays):
        return npz(spec.path, spec.key)
    raise ConfigError("data.test_path", "must hold the same kind of data as data.path (features or images)",
                      str(getattr(spec, "path", "")))


def _text(spec: TextData, seed: int, tokenizer: Any) -> Splits:
    """Token ids split by ``seed``; the texts themselves travel through the split beside them (``Splits.texts``: what
    the TF-IDF baseline reads), except for a file streamed because it is larger than memory."""
    if tokenizer is None:
        raise ConfigError("teacher", "text data needs a Hugging Face teacher (family: hf), whose tokenizer the "
                          "students share", getattr(spec, "path", "rotten_tomatoes"))
    ids, labels, texts, test_part = _token_ids(spec, tokenizer)
    if spec.test is not None:
        if not isinstance(spec.test, TextData):
            raise ConfigError("data.test_path", "must hold texts, as data.path does", str(spec.test.path))
        test_part = _token_ids(spec.test, tokenizer)[:3]
    test_ids, test_labels, test_texts = test_part or (None, None, None)
    labels, test_y, classes = class_indices(labels, test_labels)
    test = None if test_y is None else (test_ids, test_y)
    if test is not None and test_texts is None:
        texts = None  # the baseline needs every part's texts
    tokens = Tokens(vocab_size=len(tokenizer), pad_id=int(tokenizer.pad_token_id or 0),
                    mask_id=None if tokenizer.mask_token_id is None else int(tokenizer.mask_token_id),
                    special=tuple(sorted(int(i) for i in set(tokenizer.all_special_ids) - {tokenizer.pad_token_id})))
    return split((ids, labels), test, spec.val_fraction, spec.test_fraction, seed, spec.train_size, tokens=tokens,
                 classes=classes, texts=None if texts is None else (texts, test_texts))


def _token_ids(spec: TextData, tokenizer: Any) -> tuple[Any, Any, Any, tuple[Any, Any, Any] | None]:
    """A text source's token ids (memory-mapped, for a file larger than memory), labels and texts (None when
    streamed), and a datasets folder's test split as the same three (else None)."""
    length, cut = spec.max_length, spec.truncation
    if isinstance(spec, SavedTexts):
        if saved.text_bytes(spec.path, spec.key) > text.STREAM_BYTES:
            (ids, labels), test = saved.streamed_texts(spec.path, spec.key, spec.text_column, spec.label_column,
                                                       tokenizer, length, cut)
            return ids, labels, None, None if test is None else (*test, None)
        (texts, labels), test = saved.texts(spec.path, spec.key, spec.text_column, spec.label_column)
        check_texts(texts, labels, spec.path)
        held = None if test is None else (tokenize(test[0], tokenizer, length, cut), test[1], test[0])
        return tokenize(texts, tokenizer, length, cut), labels, texts, held
    source = spec.path if isinstance(spec, TextFile) else None
    key = spec.key if isinstance(spec, TextFile) else "data.name"
    if source is not None and text.is_large(source):
        return (*text.streamed(source, key, spec.text_column, spec.label_column, tokenizer, length, cut), None, None)
    texts, labels = read_texts(source, key, spec.text_column, spec.label_column)
    return tokenize(texts, tokenizer, length, cut), labels, texts, None


__all__ = ["FASHION_MNIST_DIR", "IMAGE_SETS", "STANDARDIZE", "DataSpec", "FolderPreview", "InputSpec", "Preview",
           "Shape", "Standardize", "TEXT_KEYS", "TEXT_SETS", "Splits", "Texts", "Tokens", "given_splits", "load",
           "preview", "read_idx"]
