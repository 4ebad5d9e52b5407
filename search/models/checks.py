"""Argument checks the families share: a bad value is a ``ConfigError`` naming the setting."""

from __future__ import annotations

from typing import Any

import torch

from squeezer.search.errors import ConfigError

MAX_DEPTH = 1000  # deeper plain stacks do not train; the bound also keeps a typo from building a million layers


def check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(key, rule, value)


def on_meta() -> bool:
    """Whether models are being built on the meta device (shapes only: the checks before anything trains)."""
    return torch.empty(0).device.type == "meta"
