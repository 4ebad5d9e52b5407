"""Structured pruning of BERT-style encoders: whole layers (every k-th kept), and whole attention heads and FFN units,
lowest L1 weight first.

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


Scores = dict[nn.Parameter, torch.Tensor]


def kept_layers(total: int, keep: int) -> list[int]:
    """Which of ``total`` layers ``keep`` evenly spaced ones are, the last included (6 keep 3: 1, 3, 5)."""
    return [(i + 1) * total // keep - 1 for i in range(keep)]


def drop_layers(model: nn.Module, keep: int) -> nn.Module:
    """Keep ``keep`` of the encoder's layers in place, evenly spaced (``kept_layers``); the others are removed."""
    layers_of_model = set(encoder_layers(model))
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)
             and all(layer in layers_of_model for layer in m)]
    for name, layers in lists:
        parent, _, child = name.rpartition(".")
        kept = nn.ModuleList([layers[i] for i in kept_layers(len(layers), min(keep, len(layers)))])
        setattr(model.get_submodule(parent) if parent else model, child, kept)
    for module in model.modules():  # a Hugging Face model's config says how many layers it has
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "num_hidden_layers"):
            config.num_hidden_layers = len(encoder_layers(model))
    return model


@torch.no_grad()
def prune_heads_and_ffn(model: nn.Module, ratio: float, scores: Scores | None = None, scope: str = "layer") \
        -> nn.Module:
    """Remove ``ratio`` of the attention heads and FFN units in place: of every layer's (``scope`` layer) or of
    all, ranked together (``global``; each layer keeps at least one of each). Importance is the L1 norm of each
    unit's weights, or the sum of their Taylor ``scores`` (|w x grad|)."""
    layers = encoder_layers(model)
    weigh = (lambda w: w.abs()) if scores is None else (lambda w: scores.get(w, w.abs()))
    head_scores = [_head_scores(layer, weigh) for layer in layers]
    unit_scores = [weigh(layer.intermediate.dense.weight).sum(1) + weigh(layer.output.dense.weight).sum(0)
                   for layer in layers]
    kept_heads, kept_units = _keep(head_scores, ratio, scope), _keep(unit_scores, ratio, scope)
    for layer, keep, units in zip(layers, kept_heads, kept_units, strict=True):
        attention = layer.attention.self
        size = attention.attention_head_size
        rows = unit_rows(keep, size)
        for name in ("query", "key", "value"):
            setattr(attention, name, slice_linear(getattr(attention, name), rows=rows))
        layer.attention.output.dense = slice_linear(layer.attention.output.dense, cols=rows)
        attention.num_attention_heads, attention.all_head_size = len(keep), len(rows)
        layer.intermediate.dense = slice_linear(layer.intermediate.dense, rows=units)
        layer.output.dense = slice_linear(layer.output.dense, cols=units)
    return model


def _head_scores(layer: Any, weigh: Any) -> torch.Tensor:
    attention = layer.attention.self
    size = attention.attention_head_size
    rows = sum(weigh(getattr(attention, n).weight).sum(1) for n in ("query", "key", "value"))
    columns = weigh(layer.attention.output.dense.weight).sum(0)
    return (rows + columns).view(-1, size).sum(1)


def _keep(scores: list[torch.Tensor], ratio: float, scope: str) -> list[torch.Tensor]:
    """Per layer, the indices kept (at least one), in their original order: each layer's ``1 - ratio`` highest
    scores, or (global) those above the ``ratio`` quantile of all layers' scores, each normalised by its layer's
    mean so that layers of different scale compete fairly."""
    if scope == "global":
        normalised = [s / s.mean().clamp(min=1e-12) for s in scores]
        everything = torch.cat(normalised)
        cut = everything.sort().values[math.floor(ratio * len(everything)) - 1] if ratio * len(everything) >= 1 \
            else -math.inf
        return [torch.nonzero(s > cut).flatten() if (s > cut).any() else s.argmax().reshape(1) for s in normalised]
    return [s.topk(max(1, len(s) - math.floor(ratio * len(s)))).indices.sort().values for s in scores]


def unit_rows(units: torch.Tensor, size: int) -> torch.Tensor:
    """The rows (or columns) of a projection that ``units`` own, ``size`` each (attention heads by index)."""
    return torch.cat([torch.arange(u * size, (u + 1) * size) for u in units.tolist()])


@torch.no_grad()
def slice_linear(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new ``nn.Linear`` keeping ``rows`` of ``linear``'s outputs and ``cols`` of its inputs (all where None), in
    its dtype and on its device."""
    weight = linear.weight
    weight = weight if rows is None else weight[rows]
    weight = weight if cols is None else weight[:, cols]
    smaller = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None, dtype=weight.dtype,
                        device=weight.device)
    smaller.weight.copy_(weight)
    if linear.bias is not None:
        smaller.bias.copy_(linear.bias if rows is None else linear.bias[rows])
    return smaller
