"""Low-rank factorisation: each Linear (and 1x1 convolution) becomes two thinner layers from its truncated SVD,
W ≈ (U·√S)(√S·Vᵀ), where that saves weights; then optional fine-tuning."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from squeezer.compressors.base import Compressor, CompressorConfig, TrialContext, check
from squeezer.compressors.registry import register
from squeezer.compressors.training import finetune


@dataclass(frozen=True)
class LowRankConfig(CompressorConfig):
    rank_ratio: float = 0.5      # rank kept, as a fraction of min(fan-in, fan-out)
    skip_last: bool = True       # the classifier is small and sensitive
    finetune_epochs: int = 1
    lr: float = 5e-4

    def validate(self) -> None:
        check(0 < self.rank_ratio <= 1, "rank_ratio", "must be in (0, 1]", self.rank_ratio)
        check(isinstance(self.skip_last, bool), "skip_last", "must be true or false", self.skip_last)
        check(isinstance(self.finetune_epochs, int) and self.finetune_epochs >= 0, "finetune_epochs",
              "must be an integer >= 0", self.finetune_epochs)
        check(self.lr > 0, "lr", "must be > 0", self.lr)


@register
class LowRank(Compressor):
    """Replace layers by their rank-``r`` factors when two factors hold fewer weights than the layer."""

    name = "lowrank"
    searched = {"rank_ratio": {"float": [0.1, 1.0]}}
    Config = LowRankConfig
    config: LowRankConfig
    training_fields = ("finetune_epochs",)

    def label(self) -> str:
        return f"rank {self.config.rank_ratio:.2f}" if self.config.rank_ratio < 1 else ""

    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        model = copy.deepcopy(model).eval()
        if self.config.rank_ratio == 1:
            return model
        if not factorize(model, self.config.rank_ratio, self.config.skip_last):
            return model  # nothing changed: nothing to recover
        return finetune(model, ctx, self.config.finetune_epochs, self.config.lr, stage=self.name)


def factorize(model: nn.Module, rank_ratio: float, skip_last: bool = True) -> int:
    """Factorise ``model``'s Linear and 1x1 conv layers in place; returns how many were replaced."""
    candidates = [(name, m) for name, m in model.named_modules() if _factorable(m)]
    if skip_last and candidates:
        candidates = candidates[:-1]
    replaced = 0
    for name, layer in candidates:
        fan_out, fan_in = layer.weight.shape[:2]
        rank = max(1, round(rank_ratio * min(fan_in, fan_out)))
        if rank * (fan_in + fan_out) >= fan_in * fan_out:
            continue  # the factors would not be smaller
        _set(model, name, _factors(layer, rank))
        replaced += 1
    return replaced


def _factorable(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1
                                        and m.stride == (1, 1) and m.padding in ((0, 0), "valid"))


@torch.no_grad()
def _factors(layer: nn.Linear | nn.Conv2d, rank: int) -> nn.Sequential:
    weight = layer.weight.reshape(layer.weight.shape[0], -1)
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    root = s[:rank].sqrt()
    first, second = vh[:rank] * root[:, None], u[:, :rank] * root  # (r, in), (out, r)
    if isinstance(layer, nn.Conv2d):  # a 1x1 convolution is a Linear layer over channels
        a: nn.Module = nn.Conv2d(weight.shape[1], rank, 1, bias=False)
        b: nn.Module = nn.Conv2d(rank, weight.shape[0], 1, bias=layer.bias is not None)
        first, second = first[:, :, None, None], second[:, :, None, None]
    else:
        a = nn.Linear(weight.shape[1], rank, bias=False)
        b = nn.Linear(rank, weight.shape[0], bias=layer.bias is not None)
    a.weight = nn.Parameter(first.contiguous())
    b.weight = nn.Parameter(second.contiguous())
    if layer.bias is not None:
        b.bias = nn.Parameter(layer.bias.clone())
    return nn.Sequential(a, b)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
