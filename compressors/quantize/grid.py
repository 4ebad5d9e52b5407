"""Integer grids for low-bit weights: codes and scales per group of a row, ternary codes, and bit packing.

A weight ``w`` of shape (out, ...) is viewed as rows of fan-in; each row splits into groups of ``group_size``
(0: the whole row, i.e. per output channel) and each group gets its own scale.
"""

from __future__ import annotations

import torch

TERNARY = 2  # ternary weights {-1, 0, +1} x scale, stored in 2 bits


def code_range(bits: int) -> tuple[int, int]:
    """The signed integer codes of a symmetric ``bits``-bit grid (ternary for 2 bits)."""
    if bits == TERNARY:
        return -1, 1
    return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1


def groups(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """``w`` as (out, n_groups, group_size), the last group zero-padded; group_size 0 means one group per row."""
    rows = w.detach().reshape(w.shape[0], -1)
    size = group_size or rows.shape[1]
    pad = -rows.shape[1] % size
    return torch.nn.functional.pad(rows, (0, pad)).reshape(rows.shape[0], -1, size)


def quantize(w: torch.Tensor, bits: int, group_size: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed integer codes (int8 tensor, shaped like ``groups``) and one float scale per group.

    Ternary uses TWN's threshold (0.7 x mean |w|) and the mean magnitude of the survivors as the scale; the other
    widths round to the nearest step of absmax / max_code.
    """
    g = groups(w, group_size)
    low, high = code_range(bits)
    if bits == TERNARY:
        delta = 0.7 * g.abs().mean(-1, keepdim=True)
        keep = g.abs() > delta
        scale = (g.abs() * keep).sum(-1, keepdim=True) / keep.sum(-1, keepdim=True).clamp(min=1)
        codes = torch.sign(g) * keep
    else:
        scale = g.abs().amax(-1, keepdim=True) / high
        codes = torch.round(g / scale.clamp(min=1e-12)).clamp(low, high)
    return codes.to(torch.int8), scale.clamp(min=1e-12)


def dequantize(codes: torch.Tensor, scale: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The float weight of ``shape`` that ``codes`` and ``scale`` stand for."""
    flat = (codes.float() * scale).reshape(shape[0], -1)
    fan_in = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
    return flat[:, :fan_in].reshape(shape)


def fake_quantize(w: torch.Tensor, bits: int, group_size: int = 0) -> torch.Tensor:
    """``w`` rounded onto its grid, with a straight-through gradient (for quantization-aware training)."""
    codes, scale = quantize(w, bits, group_size)
    snapped = dequantize(codes, scale, w.shape).to(w.dtype)
    return w + (snapped - w).detach()


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned ``bits``-bit codes (0 .. 2**bits - 1, flattened) packed little-end-first into uint8 bytes."""
    per_byte = 8 // bits
    flat = codes.flatten().to(torch.int32)
    flat = torch.nn.functional.pad(flat, (0, -len(flat) % per_byte)).reshape(-1, per_byte)
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    return (flat << shifts).sum(1).to(torch.uint8)


def unpack(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The first ``count`` codes of ``pack``'s bytes."""
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    return ((packed.to(torch.int32)[:, None] >> shifts) & (2**bits - 1)).flatten()[:count]
