"""What a model's input is and the preprocessing inference needs: the standardisation fitted on the training split,
the input's shape and type, the class names in index order. Models train on standardised features; every deployed
model carries the standardisation (``squeezer.search.runtime.preprocess``), so it takes the user's raw input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

STANDARDIZE = ("feature", "global", "none")  # data.standardize
MIN_STD = 1e-8  # a constant feature is centred, not blown up
CHUNK_BYTES = 64 << 20  # rows read at once when fitting, as float64


@dataclass(frozen=True)
class Standardize:
    """``(x - mean) / std`` with one mean and std per feature column of a table, per channel of an image
    (``feature``), or one for all (``global``). ``shape``: how they broadcast over one sample."""

    mode: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    shape: tuple[int, ...]

    @classmethod
    def fit(cls, x: np.ndarray, mode: str, rows: np.ndarray | None = None) -> Standardize | None:
        """The standardisation of training features ``x`` (N, F) or (N, C, H, W) (only its ``rows``, if given);
        None for ``mode`` none. Computed over chunks of rows (merged as Chan et al. merge variances), so a
        memory-mapped ``x`` is never read whole into memory."""
        if mode == "none":
            return None
        rows = np.arange(len(x)) if rows is None else np.asarray(rows)
        per_row = max(1, int(np.prod(x.shape[1:]))) * 8
        count, mean, m2 = 0, np.zeros(()), np.zeros(())
        for chunk in np.array_split(rows, max(1, len(rows) * per_row // CHUNK_BYTES)):
            values = np.asarray(x[np.sort(chunk)], dtype=np.float64)
            # one row per statistic: all values (global), or per column of a table / channel of an image
            values = values.reshape(1, -1) if mode == "global" else np.moveaxis(values, 1, 0).reshape(x.shape[1], -1)
            n, chunk_mean = values.shape[1], values.mean(axis=1)
            chunk_m2 = ((values - chunk_mean[:, None]) ** 2).sum(axis=1)
            delta, total = chunk_mean - mean, count + n
            mean, m2, count = mean + delta * n / total, m2 + chunk_m2 + delta ** 2 * count * n / total, total
        std = np.sqrt(m2 / count)
        std = np.where(std < MIN_STD, 1.0, std)
        shape = (1,) if mode == "global" else (x.shape[1],) + (1,) * (x.ndim - 2)
        return cls(mode, tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()), shape)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=torch.float32).reshape(self.shape)
        return mean, torch.tensor(self.std, dtype=torch.float32).reshape(self.shape)

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        mean, std = self.tensors()
        if isinstance(x, torch.Tensor):
            return (x - mean) / std
        return ((x - mean.numpy()) / std.numpy()).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"standardize": self.mode, "mean": list(self.mean), "std": list(self.std), "shape": list(self.shape)}

    @classmethod
    def from_description(cls, described: dict[str, Any] | None) -> Standardize | None:
        if not described:
            return None
        return cls(described["standardize"], tuple(described["mean"]), tuple(described["std"]),
                   tuple(described["shape"]))


@dataclass(frozen=True)
class InputSpec:
    """One sample's shape and type as the user feeds it, the class names in index order, and the preprocessing the
    deployed model applies first."""

    shape: tuple[int, ...]
    dtype: str  # float32 (features, images) or int64 (token ids)
    classes: tuple[str, ...]
    standardize: Standardize | None = None

    def prepared(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the trained model sees it."""
        return x if self.standardize is None else self.standardize(x)

    def describe(self) -> dict[str, Any]:
        return {"input_shape": ["N", *self.shape], "dtype": self.dtype, "classes": list(self.classes),
                "preprocessing": None if self.standardize is None else self.standardize.describe()}


__all__ = ["STANDARDIZE", "InputSpec", "Standardize"]
