"""``lm_quantize``: the deployed precision of a causal LM's weights — 32 (as trained), 16 (bfloat16 weights and
compute), 8 or 4 (weight-only integers on the linear layers, ``weight_only``). The last step of a pipeline."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from squeezer.compressors.base import Compressor, CompressorConfig, check
from squeezer.compressors.lm import weight_only
from squeezer.compressors.lm.context import LmContext
from squeezer.compressors.registry import register

LM_BITS = (32, 16, 8, 4)


@dataclass(frozen=True)
class LmQuantizeConfig(CompressorConfig):
    bits: int = 8
    group_size: int = 32  # input channels sharing one scale (8 and 4 bits)

    def validate(self) -> None:
        check(self.bits in LM_BITS, "bits", f"must be one of {list(LM_BITS)}", self.bits)
        check(isinstance(self.group_size, int) and not isinstance(self.group_size, bool) and self.group_size >= 8,
              "group_size", "must be an integer >= 8", self.group_size)


@register
class LmQuantize(Compressor):
    name = "lm_quantize"
    Config = LmQuantizeConfig
    task = "language_model"
    final = True
    searched: ClassVar[dict[str, Any]] = {"bits": {"choice": list(LM_BITS)}}

    def label(self) -> str:
        return "" if self.config.bits == 32 else "bf16" if self.config.bits == 16 else f"int{self.config.bits}"

    def apply(self, model: nn.Module, ctx: LmContext) -> nn.Module:  # type: ignore[override]
        model = copy.deepcopy(model).cpu().float().eval()
        if self.config.bits == 16:
            return model.to(torch.bfloat16)
        if self.config.bits in (8, 4):
            return weight_only.quantize(model, self.config.bits, self.config.group_size)
        return model


__all__ = ["LM_BITS", "LmQuantize", "LmQuantizeConfig"]
