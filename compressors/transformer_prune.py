"""Structured pruning of BERT-style encoders: whole attention heads and FFN units, lowest L1 weight first.

Each layer keeps ``1 - ratio`` of its heads and of its FFN units (at least one of each); the Linear layers are
rebuilt smaller, so the saved model really shrinks. Hugging Face's attention reshapes by head size, so fewer heads
need no other change.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def encoder_layers(model: nn.Module) -> list[Any]:  # Hugging Face layers: attributes by name
    """The transformer layers of ``model``: modules with a self-attention (query/key/value) and an FFN."""
    return [m for m in model.modules() if hasattr(m, "attention") and hasattr(m, "intermediate")
            and hasattr(getattr(m.attention, "self", None), "query")]


def is_transformer(model: nn.Module) -> bool:
    return bool(encoder_layers(model))


@torch.no_grad()
def prune_heads_and_ffn(model: nn.Module, ratio: float) -> nn.Module:
    """Remove ``ratio`` of every layer's attention heads and FFN units in place."""
    for layer in encoder_layers(model):
        attention = layer.attention.self
        size = attention.attention_head_size
        heads = attention.query.out_features // size
        keep = _keep(_head_scores(layer, size, heads), heads, ratio)
        rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in keep.tolist()])
        for name in ("query", "key", "value"):
            setattr(attention, name, _rows(getattr(attention, name), rows))
        layer.attention.output.dense = _columns(layer.attention.output.dense, rows)
        attention.num_attention_heads, attention.all_head_size = len(keep), len(rows)
        units = layer.intermediate.dense.out_features
        scores = layer.intermediate.dense.weight.abs().sum(1) + layer.output.dense.weight.abs().sum(0)
        kept_units = _keep(scores, units, ratio)
        layer.intermediate.dense = _rows(layer.intermediate.dense, kept_units)
        layer.output.dense = _columns(layer.output.dense, kept_units)
    return model


def _head_scores(layer: Any, size: int, heads: int) -> torch.Tensor:
    attention = layer.attention.self
    rows = sum(getattr(attention, n).weight.abs().sum(1) for n in ("query", "key", "value"))
    columns = layer.attention.output.dense.weight.abs().sum(0)
    return (rows + columns).view(heads, size).sum(1)


def _keep(scores: torch.Tensor, total: int, ratio: float) -> torch.Tensor:
    """Indices of the ``1 - ratio`` highest scores (at least one), in their original order."""
    count = max(1, total - math.floor(ratio * total))
    return scores.topk(count).indices.sort().values


def _rows(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    smaller = nn.Linear(linear.in_features, len(keep), bias=linear.bias is not None)
    smaller.weight.copy_(linear.weight[keep])
    if linear.bias is not None:
        smaller.bias.copy_(linear.bias[keep])
    return smaller


def _columns(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    smaller = nn.Linear(len(keep), linear.out_features, bias=linear.bias is not None)
    smaller.weight.copy_(linear.weight[:, keep])
    if linear.bias is not None:
        smaller.bias.copy_(linear.bias)
    return smaller
