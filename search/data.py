"""Datasets by name (scikit-learn's digits, Fashion-MNIST from IDX files) or from a user's .npz, split by seed."""

from __future__ import annotations

import gzip
import hashlib
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
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ConfigError("data", "is not an IDX file (bad magic number)", str(path))
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim).reshape(shape)


def _npz(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ConfigError(key, "file not found; give the path of an .npz with arrays X and y", str(path))
    with np.load(path, allow_pickle=False) as arrays:
        missing = sorted({"X", "y"} - set(arrays.files))
        if missing:
            raise ConfigError(key, f"the .npz must hold arrays X and y; missing {missing}", str(path))
        x, y = arrays["X"].astype(np.float32), arrays["y"]
    if len(x) != len(y) or x.ndim not in (2, 3, 4):
        raise ConfigError(key, "X must be (N, features), (N, H, W) or (N, C, H, W) with len(X) == len(y)",
                          f"X{x.shape}, y{y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ConfigError(key, "y must hold integer class indices 0..K-1 (map string labels to ints first)",
                          f"y of dtype {y.dtype}, min {y.min()}")
    return (x[:, None] if x.ndim == 3 else x), y.astype(np.int64)


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
    mean, std = x[train_idx].mean(), x[train_idx].std() + 1e-8
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray((a - mean) / std, dtype=np.float32))  # noqa: E731
    return Splits(tensor(x[train_idx]), torch.from_numpy(y[train_idx]), tensor(x[val_idx]),
                  torch.from_numpy(y[val_idx]), tensor(test[0]), torch.from_numpy(test[1]))
