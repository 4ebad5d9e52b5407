"""Student (and teacher) families by name: plain ``nn.Sequential`` stacks whose depth and widths are searchable."""

from __future__ import annotations

import inspect
import math
import os
from typing import Any, Callable

import torch
from torch import nn

from squeezer.search.errors import ConfigError

Family = Callable[..., nn.Sequential]
MAX_DEPTH = 1000  # deeper plain stacks do not train; the bound also keeps a typo from building a million layers


def mlp(input_shape: tuple[int, ...], num_classes: int, depth: int = 2, width: int = 128,
        taper: float = 1.0, dropout: float = 0.0) -> nn.Sequential:
    """Flatten, then ``depth`` hidden Linear+ReLU layers of ``width``, each ``taper`` times the one before."""
    _check(0 <= depth <= MAX_DEPTH, "depth", f"must be in [0, {MAX_DEPTH}]", depth)
    _check(width >= 1, "width", "must be >= 1", width)
    _check(0 < taper <= 1, "taper", "must be in (0, 1]", taper)
    _check(0 <= dropout < 1, "dropout", "must be in [0, 1)", dropout)
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for i in range(depth):
        fan_out = max(4, round(width * taper**i))
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        fan_in = fan_out
    return nn.Sequential(*layers, nn.Linear(fan_in, num_classes))


def cnn(input_shape: tuple[int, ...], num_classes: int, depth: int = 2, channels: int = 16, kernel: int = 3,
        hidden: int = 64) -> nn.Sequential:
    """``depth`` blocks of Conv-BatchNorm-ReLU-MaxPool (channels doubling), then a hidden Linear layer."""
    _check(len(input_shape) == 3, "family", "cnn needs image inputs (C, H, W)", input_shape)
    _check(depth >= 1, "depth", "must be >= 1", depth)
    _check(channels >= 1, "channels", "must be >= 1", channels)
    _check(kernel in (1, 3, 5, 7), "kernel", "must be one of [1, 3, 5, 7]", kernel)
    _check(hidden >= 1, "hidden", "must be >= 1", hidden)
    c_in, side = input_shape[0], min(input_shape[1:])
    _check(side >= 2**depth, "depth", f"must satisfy 2**depth <= {side} (the input side)", depth)
    layers: list[nn.Module] = []
    for i in range(depth):
        c_out = channels * 2**i
        layers += [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), nn.BatchNorm2d(c_out), nn.ReLU(),
                   nn.MaxPool2d(2)]
        c_in = c_out
    # Odd kernels with padding k // 2 keep the size; each pooling halves it (rounding down).
    flat = c_in * (input_shape[1] // 2**depth) * (input_shape[2] // 2**depth)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


FAMILIES: dict[str, Family] = {"mlp": mlp, "cnn": cnn}


def build(arch: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, key: str = "student") -> nn.Module:
    """Build the model ``arch`` describes: ``family`` plus that family's keyword arguments."""
    arch = dict(arch)
    family = arch.pop("family", None)
    if family not in FAMILIES:
        raise ConfigError(f"{key}.family", f"must be one of {sorted(FAMILIES)}", family)
    known = [p for p in inspect.signature(FAMILIES[family]).parameters if p not in ("input_shape", "num_classes")]
    unknown = sorted(set(arch) - set(known))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", f"is not a setting of family {family!r}; its settings are {known}")
    try:
        return FAMILIES[family](tuple(input_shape), num_classes, **arch)
    except ConfigError as err:
        raise ConfigError(f"{key}.{err.key}", err.rule, err.value) from None
    except TypeError as err:  # a value of the wrong type, e.g. a string depth
        raise ConfigError(key, f"family {family!r} rejected its settings ({err})", arch) from None


def check_fits(arch: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, batch_size: int,
               key: str = "student") -> None:
    """Refuse a model whose training would not fit in the memory available, before allocating any of it.

    The model is built on the meta device (shapes only). Training needs its weights four times (weights, gradients,
    Adam's two moments) plus about three copies of a batch's activations, bounded from above by each layer's
    output size at the input's resolution (no forward pass: on the meta device that costs more than the check).
    """
    with torch.device("meta"):
        try:
            model = build(arch, input_shape, num_classes, key=key)
        except RuntimeError as err:  # e.g. a weight tensor whose size overflows 64 bits
            raise ConfigError(key, f"is too large to build ({str(err).splitlines()[0]})", arch) from None
    pixels = math.prod(input_shape[1:]) if len(input_shape) == 3 else 1
    per_sample = sum(m.out_features if isinstance(m, nn.Linear) else m.out_channels * pixels
                     for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    needed = 4 * (4 * sum(p.numel() for p in model.parameters()) + 3 * batch_size * per_sample)
    available = available_memory()
    if needed > available:
        raise ConfigError(key, f"needs about {needed / 2**30:.1f} GiB to train, more than the "
                          f"{available / 2**30:.1f} GiB of memory available", arch)


def available_memory() -> int:
    """Bytes of memory this process may still allocate (MemAvailable on Linux)."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(key, rule, value)
