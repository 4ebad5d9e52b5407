"""What every dataset shares: labels as class indices, the seeded train / validation / test split, its checks."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from pathlib import Path

import numpy as np
import torch

from squeezer.search.data.arrays import NpyWriter, file_stamp, open_mapped
from squeezer.search.data.inputs import InputSpec, Standardize
from squeezer.search.defaults import cache_dir
from squeezer.search.errors import ConfigError


@dataclass(frozen=True)
class Tokens:
    """What a text model needs to know of its inputs, which are token ids from the teacher's tokenizer."""

    vocab_size: int
    pad_id: int
    mask_id: int | None = None  # the tokenizer's mask token, where it has one (span masking augments with it)
    special: tuple[int, ...] = ()  # its other special tokens ([CLS], [SEP], ...), which augmentation leaves alone


class Shape(Protocol):
    """What the models depend on: one sample's shape, the number of classes, the tokens of text (``Splits``, or an
    image folder's ``Preview`` before it is decoded)."""

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def num_classes(self) -> int: ...

    @property
    def tokens(self) -> Tokens | None: ...


@dataclass(frozen=True)
class Preview:
    """The shape of data known before it is read (an image folder's, from its files' headers)."""

    input_shape: tuple[int, ...]
    num_classes: int
    tokens: Tokens | None = None


@dataclass(frozen=True)
class Texts:
    """The raw texts of the training, validation and test parts, row for row with their token ids."""

    train: list[str]
    val: list[str]
    test: list[str]


@dataclass
class Splits:
    """Train / validation / test tensors, the test split for final reports only: standardised features, or token
    ids padded to one length (``tokens`` set). Deployed models take the user's raw input: ``val_raw`` and
    ``test_raw`` are the validation and test inputs as the user has them (the same tensors where nothing is
    standardised), ``standardize`` what the deployed model does to them first."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    tokens: Tokens | None = None
    classes: tuple[str, ...] | None = None  # the class names, where the labels were names (index i is class i)
    standardize: Standardize | None = None
    raw: tuple[torch.Tensor, torch.Tensor] | None = None  # validation and test inputs before standardisation
    files: dict[str, str] = field(default_factory=dict)  # the memory-mapped parts' files, by part name
    by_path: bool = False  # pickled, the mapped parts travel as their files' paths (processes of one machine)
    texts: Texts | None = None  # text data: the texts of each part, in the tensors' order (None when streamed)

    def sent_by_path(self) -> Splits:
        """These splits, pickled with the memory-mapped parts as their files' paths, reopened where they are
        unpickled: for worker processes on this machine, so that data larger than memory is not copied to them."""
        return dataclasses.replace(self, by_path=True)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.by_path:
            for name in self.files:
                if name in ("val_raw", "test_raw"):
                    state["raw"] = None
                else:
                    state[name] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.by_path and self.files:
            parts = {name: torch.from_numpy(open_mapped(Path(path), writable=True))
                     for name, path in self.files.items()}
            for name in ("train_x", "val_x", "test_x"):
                if name in parts:
                    setattr(self, name, parts[name])
            if "val_raw" in parts:
                self.raw = (parts["val_raw"], parts["test_raw"])

    @property
    def val_raw(self) -> torch.Tensor:
        return self.val_x if self.raw is None else self.raw[0]

    @property
    def test_raw(self) -> torch.Tensor:
        return self.test_x if self.raw is None else self.raw[1]

    @property
    def spec(self) -> InputSpec:
        """What the deployed model takes: the raw input's shape and type, class names, preprocessing."""
        classes = self.classes or tuple(str(i) for i in range(self.num_classes))
        return InputSpec(self.input_shape, "int64" if self.tokens else "float32", classes, self.standardize)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def pad_id(self) -> int | None:
        """The padding token of text inputs; None for features."""
        return self.tokens.pad_id if self.tokens else None

    @property
    def num_classes(self) -> int:
        return int(max(self.train_y.max(), self.val_y.max(), self.test_y.max())) + 1

    def fingerprint(self) -> str:
        """A short hash of the training data, to key caches on."""
        digest = hashlib.sha256()
        rows = max(1, (16 << 20) // max(1, self.train_x[0].numel() * self.train_x.element_size()))
        for chunk in self.train_x.split(rows):  # 16 MiB at a time: the data may be memory-mapped
            digest.update(chunk.numpy().tobytes())
        digest.update(self.train_y.numpy().tobytes())
        return digest.hexdigest()[:16]


Labels = tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None]


def class_indices(train_y: np.ndarray, test_y: np.ndarray | None) -> Labels:
    """Labels as class indices 0..K-1 (train, test) and the class names, if they were names. Names map to indices
    in sorted order, the same for the train and test files; whole-number floats, and numbers read as text (CSV),
    become integers."""
    train_y, test_y = _numbers(train_y), None if test_y is None else _numbers(test_y)
    if test_y is not None and _label_kind(train_y) != _label_kind(test_y):
        raise ConfigError("data.test_path", f"its labels must be of the training labels' kind: the training file's "
                          f"are {_label_kind(train_y)}, the test file's {_label_kind(test_y)}",
                          f"{train_y[:3].tolist()} vs {test_y[:3].tolist()}")
    both = train_y if test_y is None else np.concatenate([train_y, test_y])
    if both.dtype.kind in "US":
        names, indices = np.unique(both, return_inverse=True)
        indices = indices.astype(np.int64)
        return indices[: len(train_y)], None if test_y is None else indices[len(train_y):], tuple(names.tolist())
    if both.dtype.kind == "f" and np.isfinite(both).all() and (both == np.round(both)).all():
        both = both.astype(np.int64)  # whole-number floats, as some tools save labels
    if both.dtype.kind not in "iu" or both.min() < 0:
        raise ConfigError("data.path", "y must hold class indices 0..K-1 (integers) or class names (strings)",
                          f"y of dtype {both.dtype}, min {both.min()}")
    both = both.astype(np.int64)
    return both[: len(train_y)], None if test_y is None else both[len(train_y):], None


def _numbers(labels: np.ndarray) -> np.ndarray:
    """Labels written as text that are all whole numbers ("0", "1"), as integers."""
    if labels.dtype.kind in "USO" and len(labels) and all(re.fullmatch(r"-?\d{1,18}", str(v).strip())
                                                            for v in labels):
        return np.array([int(str(v).strip()) for v in labels], dtype=np.int64)
    return labels


def _label_kind(labels: np.ndarray) -> str:
    return "class names" if labels.dtype.kind in "USO" else "class indices"


def _check_splits(x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
                  test: tuple[np.ndarray, np.ndarray]) -> None:
    """Refuse data no study can learn from or score on: one class, or a split too small to mean anything."""
    classes = len(np.unique(y[train_idx]))
    if classes < 2:
        raise ConfigError("data", "the training split must hold at least two classes", f"{classes} class(es)")
    for name, size, least in (("training", len(train_idx), 2 * classes), ("validation", len(val_idx), classes),
                              ("test", len(test[1]), 1)):
        if size < least:
            raise ConfigError("data", f"the {name} split needs at least {least} samples; use more data or change "
                              "data.val_fraction / data.test_fraction", f"{size} samples")
    if test[0].shape[1:] != x.shape[1:]:
        raise ConfigError("data.test_path", "its X must have the training data's sample shape",
                          f"{test[0].shape[1:]} vs {x.shape[1:]}")


def split(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None,
          val_fraction: float, test_fraction: float, seed: int, train_size: int | None,
          tokens: Tokens | None = None, classes: tuple[str, ...] | None = None,
          standardize: str = "feature", texts: tuple[list[str], list[str] | None] | None = None) -> Splits:
    """Split ``train`` by ``seed`` into training, validation and (unless ``test`` is given) test parts; features are
    standardised (``standardize``: per feature or channel, global, none) with the training part's statistics, token
    ids kept as they are. ``texts``: the texts of ``train``'s rows and of ``test``'s, split the same way."""
    x, y = train
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = 0 if test is not None else int(round(test_fraction * len(x)))
    n_val = int(round(val_fraction * len(x)))
    test_idx, val_idx, train_idx = np.split(order, [n_test, n_test + n_val])
    if train_size:
        train_idx = train_idx[: int(train_size)]
    test_rows = None  # a test file is all test
    if test is None:  # carved from x
        test, test_rows = (x, y[test_idx]), test_idx
    _check_splits(x, y, train_idx, val_idx, test)
    splits = _splits((x, train_idx, y[train_idx]), (x, val_idx, y[val_idx]), (test[0], test_rows, test[1]), tokens,
                     classes, standardize)
    if texts is not None:
        given, test_texts = texts
        splits.texts = Texts([given[i] for i in train_idx], [given[i] for i in val_idx],
                             [given[i] for i in test_rows] if test_rows is not None else list(test_texts or []))
    return splits


#: A part of the data: the samples ``x[rows]`` (all of ``x`` when rows is None) and their labels.
Part = tuple[np.ndarray, "np.ndarray | None", np.ndarray]


def _splits(train: Part, val: Part, test: Part, tokens: Tokens | None, classes: tuple[str, ...] | None,
            standardize: str) -> Splits:
    """The three parts as tensors: features standardised with the training part's statistics (the raw validation
    and test inputs kept beside), token ids as they are. Parts of a memory-mapped array (an image folder) are
    written, a chunk at a time, to memory-mapped files (``mapped``) instead of being read into memory."""
    fitted = None if tokens is not None else Standardize.fit(train[0], standardize, rows=train[1])
    mapped = any(isinstance(p[0], np.memmap) for p in (train, val, test))
    store = _MappedParts(train, val, test, standardize, np.int64 if tokens is not None else np.float32) \
        if mapped else None

    def tensor(part: Part, name: str, transform: Standardize | None) -> torch.Tensor:
        if store is not None:
            return store.tensor(part, name, transform)
        values = part[0] if part[1] is None else part[0][part[1]]
        if tokens is not None:
            return torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64))
        values = np.ascontiguousarray(values, dtype=np.float32)
        return torch.from_numpy(values if transform is None else np.ascontiguousarray(transform(values)))

    raw = None if fitted is None else (tensor(val, "val_raw", None), tensor(test, "test_raw", None))
    return Splits(tensor(train, "train_x", fitted), torch.from_numpy(train[2]), tensor(val, "val_x", fitted),
                  torch.from_numpy(val[2]), tensor(test, "test_x", fitted), torch.from_numpy(test[2]), tokens,
                  classes, fitted, raw, files=dict(store.files) if store else {})


class _MappedParts:
    """The parts of memory-mapped data as ``.npy`` files (float32 features, int64 token ids) under
    ``<cache>/splits/<digest>/``, written once a chunk of rows at a time and memory-mapped (copy-on-write: a tensor
    op never writes back)."""

    CHUNK_BYTES = 32 << 20

    def __init__(self, train: Part, val: Part, test: Part, standardize: str, dtype: type) -> None:
        self.dtype, self.files = dtype, dict[str, str]()
        digest = hashlib.sha256(f"{standardize}|{np.dtype(dtype)}".encode())
        for x, rows, _ in (train, val, test):
            digest.update(_source(x).encode())
            digest.update(b"all" if rows is None else np.asarray(rows).tobytes())
        self.folder = cache_dir() / "splits" / digest.hexdigest()[:20]

    def tensor(self, part: Part, name: str, transform: Standardize | None) -> torch.Tensor:
        path = self.folder / f"{name}.npy"
        if not path.is_file():
            self._write(part, path, transform)
        self.files[name] = str(path)
        return torch.from_numpy(open_mapped(path, writable=True))

    def _write(self, part: Part, path: Path, transform: Standardize | None) -> None:
        x, rows, _ = part
        rows = np.arange(len(x)) if rows is None else np.asarray(rows)
        step = max(1, self.CHUNK_BYTES // max(1, 4 * int(np.prod(x.shape[1:]))))
        with NpyWriter(path, (len(rows), *x.shape[1:]), self.dtype) as out:
            for start in range(0, len(rows), step):
                chunk = np.asarray(x[rows[start:start + step]], dtype=self.dtype)
                out.append(chunk if transform is None else transform(chunk))


def _source(x: np.ndarray) -> str:
    """What a part's values are: a mapped file's name, size, modification time and where in it the array lies (a
    decoded image cache is named by its images' digest; an .npz may be rewritten in place), or else a hash of them."""
    filename = getattr(x, "filename", None)
    if not filename:
        return hashlib.sha256(np.ascontiguousarray(x)).hexdigest()
    return f"{file_stamp(Path(filename))}|{getattr(x, 'offset', 0)}|{x.shape}|{x.dtype}"


def given_splits(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None,
                 test: tuple[np.ndarray, np.ndarray] | None, val_fraction: float, test_fraction: float, seed: int,
                 standardize: str = "feature") -> Splits:
    """Splits of data passed as arrays: the validation and test parts as given, or carved from ``train`` by
    ``seed`` where not given; labels and standardisation as ``split`` makes them."""
    if val is None:
        return _given_labels(train, test, lambda tr, te, classes: split(
            tr, te, val_fraction, test_fraction, seed, None, classes=classes, standardize=standardize))
    if test is None:  # carve the test part from train, then keep the given validation part
        order = np.random.default_rng(seed).permutation(len(train[0]))
        n_test = int(round(test_fraction * len(order)))
        test = (train[0][order[:n_test]], train[1][order[:n_test]])
        train = (train[0][order[n_test:]], train[1][order[n_test:]])
    names = [train[1], val[1], test[1]]
    y_train, y_rest, classes = class_indices(names[0], np.concatenate(names[1:]))
    y_val, y_test = y_rest[: len(val[1])], y_rest[len(val[1]):]
    x = np.concatenate([train[0], val[0]])
    _check_splits(np.concatenate([x, test[0]]), np.concatenate([y_train, y_val, y_test]),
                  np.arange(len(train[0])), np.arange(len(train[0]), len(x)), (test[0], y_test))
    return _splits((train[0], None, y_train), (val[0], None, y_val), (test[0], None, y_test), None, classes,
                   standardize)


def _given_labels(train, test, make):  # noqa: ANN001, ANN202 - (x, y) pairs and a Splits factory
    y_train, y_test, classes = class_indices(train[1], None if test is None else test[1])
    return make((train[0], y_train), None if test is None else (test[0], y_test), classes)
