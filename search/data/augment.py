"""Train-time augmentation of image batches (``data.augment``): random horizontal flips and random crops (the
image padded by ``crop`` pixels on each side, then cut back to its size at a random offset). Only training
batches are augmented; validation, test and the teachers' cached outputs see the images as they are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from squeezer.search.errors import ConfigError

MAX_CROP = 64


@dataclass(frozen=True)
class Augment:
    flip: bool = False
    crop: int = 0

    @classmethod
    def parse(cls, raw: Any) -> "Augment | None":
        """``data.augment``: ``{flip: true, crop: 4}``; None (or empty) for none."""
        if raw is None or raw == {}:
            return None
        if not isinstance(raw, Mapping):
            raise ConfigError("data.augment", "must be a mapping such as {flip: true, crop: 4}", raw)
        unknown = sorted(set(raw) - {"flip", "crop"})
        if unknown:
            raise ConfigError(f"data.augment.{unknown[0]}", "is not an augmentation; there are flip and crop",
                              raw[unknown[0]])
        flip, crop = raw.get("flip", False), raw.get("crop", 0)
        if not isinstance(flip, bool):
            raise ConfigError("data.augment.flip", "must be true or false", flip)
        if not isinstance(crop, int) or isinstance(crop, bool) or not 0 <= crop <= MAX_CROP:
            raise ConfigError("data.augment.crop", f"must be an integer in [0, {MAX_CROP}] (pixels of padding)", crop)
        return cls(flip, crop) if flip or crop else None

    def check(self, input_shape: tuple[int, ...]) -> None:
        """Refuse data that is not images, or a crop as large as the image."""
        if len(input_shape) != 3:
            raise ConfigError("data.augment", f"flips and crops images; this data's samples have shape "
                              f"{list(input_shape)}", self.describe())
        if self.crop >= min(input_shape[1:]):
            raise ConfigError("data.augment.crop", f"must be smaller than the images' {list(input_shape[1:])}",
                              self.crop)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A randomly flipped and cropped copy of the batch ``x`` (N, C, H, W), drawn from torch's global generator
        (seeded per trial)."""
        if self.flip:
            flipped = torch.rand(len(x), device=x.device) < 0.5
            x = torch.where(flipped[:, None, None, None], x.flip(3), x)
        if self.crop:
            h, w, c = x.shape[2], x.shape[3], self.crop
            padded = F.pad(x, (c, c, c, c))
            dy, dx = torch.randint(0, 2 * c + 1, (2, len(x))).tolist()
            x = torch.stack([padded[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(zip(dy, dx, strict=True))])
        return x

    def describe(self) -> dict[str, Any]:
        return {"flip": self.flip, "crop": self.crop}


__all__ = ["Augment", "MAX_CROP"]
