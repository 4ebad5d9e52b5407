"""``lm_quantize``: the deployed precision of a causal LM's weights — 32 (as trained), 16 (bfloat16), 8 or 4 (integer
weights in groups of ``group_size`` input channels sharing a scale). The last step of a pipeline: it says the
``Precision``, carried on the model's config; the runtime the study deploys in realises it (ONNX Runtime GenAI's model
builder, ``MatMulNBits``; or the torch runtime's bf16 and ``weight_only`` layers)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from squeezer.compressors.base import Compressor, CompressorConfig, check
from squeezer.compressors.lm.context import LmContext
from squeezer.compressors.registry import register

LM_BITS = (32, 16, 8, 4)


@dataclass(frozen=True)
class Precision:
    """The deployed precision of a language model's weights: 32, 16 (bf16), or 8 / 4 bits in groups of
    ``group_size`` input channels sharing a scale."""

    bits: int = 32
    group_size: int = 32

    KEY: ClassVar[str] = "squeezer_precision"  # on the model's config: save_pretrained keeps it

    @classmethod
    def of(cls, model: nn.Module) -> "Precision":
        found = getattr(model.config, cls.KEY, None) or {}
        return cls(int(found.get("bits", 32)), int(found.get("group_size", 32)))

    def mark(self, model: nn.Module) -> nn.Module:
        """``model`` (changed, and returned) to be deployed at this precision."""
        setattr(model.config, self.KEY, {"bits": self.bits, "group_size": self.group_size})
        return model


@dataclass(frozen=True)
class LmQuantizeConfig(CompressorConfig):
    bits: int = 8
    group_size: int = 32  # input channels sharing one scale (8 and 4 bits); ONNX Runtime GenAI's block_size

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
    # 16 bits are left out of the searched default: ONNX Runtime GenAI runs them on a GPU only
    searched: ClassVar[dict[str, Any]] = {"bits": {"choice": [32, 8, 4]}, "group_size": {"choice": [32, 128]}}

    def label(self) -> str:
        c = self.config
        return "" if c.bits == 32 else "bf16" if c.bits == 16 else f"int{c.bits} g{c.group_size}"

    def apply(self, model: nn.Module, ctx: LmContext) -> nn.Module:  # type: ignore[override]
        model = copy.deepcopy(model).cpu().float().eval()
        return Precision(self.config.bits, self.config.group_size).mark(model)


__all__ = ["LM_BITS", "LmQuantize", "LmQuantizeConfig", "Precision"]
