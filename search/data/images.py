"""Image and feature-table datasets: scikit-learn's digits, Fashion-MNIST from IDX files, a user's .npz."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from squeezer.search.data.arrays import file_stamp, map_member, member_bytes
from squeezer.search.defaults import cache_dir
from squeezer.search.errors import ConfigError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MAP_BYTES = 1 << 30  # an .npz's X larger than this is memory-mapped (decompressed once if it is compressed)
_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images[:, None].astype(np.float32), bunch.target.astype(np.int64)


def fashion_mnist(directory: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    def part(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ConfigError("data.dir", f"the {prefix} IDX files must hold N images (N, H, W) and N labels",
                              f"images {images.shape}, labels {labels.shape} in {directory}")
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


def npz(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ConfigError(key, "file not found; give the path of an .npz with arrays X and y", str(path))
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":  # every .npz is a zip archive
            raise ConfigError(key, "is not an .npz file (a NumPy zip archive of arrays X and y, as np.savez writes); "
                              "text data is a .csv or .jsonl file", str(path))
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = sorted({"X", "y"} - set(arrays.files))
            if missing:
                raise ConfigError(key, f"the .npz must hold arrays X and y; missing {missing}", str(path))
            y = arrays["y"]
            x = mapped if (mapped := _large(path)) is not None else arrays["X"]
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - not a zip, truncated, pickled objects, ...: all unreadable input
        raise ConfigError(key, f"is not a readable .npz of arrays X and y ({type(err).__name__}: {err})",
                          str(path)) from None
    if y.ndim != 1 or len(y) != len(x):
        raise ConfigError(key, "y must be one label per row of X", f"y{y.shape} for X{x.shape} in {path}")
    try:
        return _features(x, key, path), y
    except ConfigError:
        unpacked = Path(getattr(x, "filename", None) or path)
        if unpacked.parent == cache_dir() / "npz":  # decompressed for nothing: bad input leaves nothing behind
            unpacked.unlink()
            for folder in (unpacked.parent, unpacked.parent.parent):
                if not any(folder.iterdir()):
                    folder.rmdir()
        raise


def _large(path: Path) -> np.memmap | None:
    """X memory-mapped where it is larger than ``MAP_BYTES`` (in the archive, or decompressed once into
    ``<cache>/npz/``): it is then split into files a chunk at a time, never read whole (``split``)."""
    size = member_bytes(path, "X")
    if size is None or size <= MAP_BYTES:
        return None
    digest = hashlib.sha256(file_stamp(path).encode()).hexdigest()[:20]
    return map_member(path, "X", cache_dir() / "npz" / f"{digest}.npy")


def _features(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.dtype.kind not in "biuf" or x.ndim not in (2, 3, 4) or len(x) == 0:
        raise ConfigError(key, "X must be a non-empty numeric array (N, features), (N, H, W) or (N, C, H, W)",
                          f"X{x.shape} of dtype {x.dtype} in {path}")
    if not isinstance(x, np.memmap):
        x = x.astype(np.float32)
    step = max(1, (64 << 20) // max(1, x[0].nbytes))
    infinite = sum(int((~np.isfinite(x[i:i + step])).sum()) for i in range(0, len(x), step))
    if infinite:
        raise ConfigError(key, "X must hold finite numbers only", f"{infinite} NaN/inf values in {path}")
    return x[:, None] if x.ndim == 3 else x


MAX_SIDE = 4096
