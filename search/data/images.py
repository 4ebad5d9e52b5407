"""Datasets by name (scikit-learn's digits, Fashion-MNIST from IDX files) or from a user's .npz, split by seed."""

from __future__ import annotations

import gzip
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from squeezer.search.errors import ConfigError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Splits:
    """Standardised train / validation / test tensors; the test split is for final reports only."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.train_y.max(), self.val_y.max(), self.test_y.max())) + 1

    def fingerprint(self) -> str:
        """A short hash of the training data, to key caches on."""
        digest = hashlib.sha256(self.train_x.numpy().tobytes())
        digest.update(self.train_y.numpy().tobytes())
        return digest.hexdigest()[:16]


def load(spec: Mapping[str, Any], seed: int) -> Splits:
    """Load the dataset a config's ``data`` section names and split it by ``seed``."""
    val_fraction = float(spec.get("val_fraction", 0.1))
    if spec.get("path"):
        train, test = _npz(Path(spec["path"]), "data.path"), None
        if spec.get("test_path"):
            test = _npz(Path(spec["test_path"]), "data.test_path")
        train_y, test_y = _class_indices(train[1], None if test is None else test[1])
        train = (train[0], train_y)
        if test is not None and test_y is not None:
            test = (test[0], test_y)
    elif spec.get("name") == "digits":
        train, test = _digits(), None
    elif spec.get("name") == "fashion_mnist":
        train, test = _fashion_mnist(Path(spec.get("dir") or FASHION_MNIST_DIR))
    else:
        raise ConfigError("data", "set `name` to one of ['digits', 'fashion_mnist'] or `path` to an .npz file",
                          dict(spec))
    return _split(train, test, val_fraction, float(spec.get("test_fraction", 0.2)), seed,
                  spec.get("train_size"))


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images[:, None].astype(np.float32), bunch.target.astype(np.int64)


def _fashion_mnist(directory: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    def part(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
        return images[:, None].astype(np.float32), labels.astype(np.int64)

    return part("train"), part("t10k")


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise ConfigError("data.dir", f"needs the IDX file {stem}[.gz] (Debian: apt-get install dataset-fashion-mnist)",
                      str(directory))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    try:
        raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    except (OSError, EOFError) as err:
        raise ConfigError("data", f"cannot read the IDX file ({err})", str(path)) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ConfigError("data", "is not an IDX file (bad magic number)", str(path))
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    try:
        return np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim).reshape(shape)
    except ValueError:
        raise ConfigError("data", f"IDX file is truncated or corrupt: its header says shape {shape}",
                          str(path)) from None


def _npz(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ConfigError(key, "file not found; give the path of an .npz with arrays X and y", str(path))
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = sorted({"X", "y"} - set(arrays.files))
            if missing:
                raise ConfigError(key, f"the .npz must hold arrays X and y; missing {missing}", str(path))
            x, y = arrays["X"], arrays["y"]
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - not a zip, truncated, pickled objects, ...: all unreadable input
        raise ConfigError(key, f"is not a readable .npz of arrays X and y ({type(err).__name__}: {err})",
                          str(path)) from None
    if y.ndim != 1 or len(y) != len(x):
        raise ConfigError(key, "y must be one label per row of X", f"y{y.shape} for X{x.shape} in {path}")
    return _features(x, key, path), y


def _features(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.dtype.kind not in "biuf" or x.ndim not in (2, 3, 4) or len(x) == 0:
        raise ConfigError(key, "X must be a non-empty numeric array (N, features), (N, H, W) or (N, C, H, W)",
                          f"X{x.shape} of dtype {x.dtype} in {path}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ConfigError(key, "X must hold finite numbers only", f"{int((~np.isfinite(x)).sum())} NaN/inf values in "
                          f"{path}")
    return x[:, None] if x.ndim == 3 else x


def _class_indices(train_y: np.ndarray, test_y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels as class indices 0..K-1. Class names (strings) map to indices in sorted order, the same for the train
    and test files, and the mapping is reported; whole-number floats become integers."""
    both = train_y if test_y is None else np.concatenate([train_y, test_y])
    if both.dtype.kind in "US":
        names, indices = np.unique(both, return_inverse=True)
        print(f"data: mapped class names to indices {dict(zip(names.tolist(), range(len(names)), strict=True))}",
              file=sys.stderr)
        indices = indices.astype(np.int64)
        return indices[: len(train_y)], None if test_y is None else indices[len(train_y):]
    if both.dtype.kind == "f" and np.isfinite(both).all() and (both == np.round(both)).all():
        both = both.astype(np.int64)  # whole-number floats, as some tools save labels
    if both.dtype.kind not in "iu" or both.min() < 0:
        raise ConfigError("data.path", "y must hold class indices 0..K-1 (integers) or class names (strings)",
                          f"y of dtype {both.dtype}, min {both.min()}")
    both = both.astype(np.int64)
    return both[: len(train_y)], None if test_y is None else both[len(train_y):]


def _check_splits(x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
                  test: tuple[np.ndarray, np.ndarray]) -> None:
    """Refuse data no study can learn from or score on: one class, or a split too small to mean anything."""
    classes = len(np.unique(y[train_idx]))
    if classes < 2:
        raise ConfigError("data", "the training split must hold at least two classes", f"{classes} class(es)")
    for name, size, least in (("training", len(train_idx), 2 * classes), ("validation", len(val_idx), classes),
                              ("test", len(test[0]), 1)):
        if size < least:
            raise ConfigError("data", f"the {name} split needs at least {least} samples; use more data or change "
                              "data.val_fraction / data.test_fraction", f"{size} samples")
    if test[0].shape[1:] != x.shape[1:]:
        raise ConfigError("data.test_path", "its X must have the training data's sample shape",
                          f"{test[0].shape[1:]} vs {x.shape[1:]}")


def _split(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None,
           val_fraction: float, test_fraction: float, seed: int, train_size: int | None) -> Splits:
    x, y = train
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = 0 if test is not None else int(round(test_fraction * len(x)))
    n_val = int(round(val_fraction * len(x)))
    test_idx, val_idx, train_idx = np.split(order, [n_test, n_test + n_val])
    if train_size:
        train_idx = train_idx[: int(train_size)]
    test = test if test is not None else (x[test_idx], y[test_idx])
    _check_splits(x, y, train_idx, val_idx, test)
    mean, std = x[train_idx].mean(), x[train_idx].std() + 1e-8
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray((a - mean) / std, dtype=np.float32))  # noqa: E731
    return Splits(tensor(x[train_idx]), torch.from_numpy(y[train_idx]), tensor(x[val_idx]),
                  torch.from_numpy(y[val_idx]), tensor(test[0]), torch.from_numpy(test[1]))
