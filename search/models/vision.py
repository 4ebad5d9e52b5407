"""Image and feature-table families: plain ``nn.Sequential`` stacks whose depth and widths are searchable."""

from __future__ import annotations

import math

from torch import nn

from squeezer.search.models.checks import MAX_DEPTH, check


def mlp(input_shape: tuple[int, ...], num_classes: int, depth: int = 2, width: int = 128,
        taper: float = 1.0, dropout: float = 0.0) -> nn.Sequential:
    """Flatten, then ``depth`` hidden Linear+ReLU layers of ``width``, each ``taper`` times the one before."""
    check(0 <= depth <= MAX_DEPTH, "depth", f"must be in [0, {MAX_DEPTH}]", depth)
    check(width >= 1, "width", "must be >= 1", width)
    check(0 < taper <= 1, "taper", "must be in (0, 1]", taper)
    check(0 <= dropout < 1, "dropout", "must be in [0, 1)", dropout)
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
    check(len(input_shape) == 3, "family", "cnn needs image inputs (C, H, W)", input_shape)
    check(depth >= 1, "depth", "must be >= 1", depth)
    check(channels >= 1, "channels", "must be >= 1", channels)
    check(kernel in (1, 3, 5, 7), "kernel", "must be one of [1, 3, 5, 7]", kernel)
    check(hidden >= 1, "hidden", "must be >= 1", hidden)
    c_in, side = input_shape[0], min(input_shape[1:])
    check(side >= 2**depth, "depth", f"must satisfy 2**depth <= {side} (the input side)", depth)
    layers: list[nn.Module] = []
    for i in range(depth):
        c_out = channels * 2**i
        layers += [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), nn.BatchNorm2d(c_out), nn.ReLU(),
                   nn.MaxPool2d(2)]
        c_in = c_out
    # Odd kernels with padding k // 2 keep the size; each pooling halves it (rounding down).
    flat = c_in * (input_shape[1] // 2**depth) * (input_shape[2] // 2**depth)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
