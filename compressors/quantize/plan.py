"""The quantization a runtime must realise: one bit-width per weight layer plus the format's knobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass(frozen=True)
class Plan:
    """``bits`` for every weight layer not in ``layer_bits`` (name -> bits; 32 keeps a layer float)."""

    bits: int = 32
    layer_bits: dict[str, int] = field(default_factory=dict)
    half: str = "fp16"
    int8_mode: str = "dynamic"      # dynamic or static (auto is resolved when the plan is made)
    per_channel: bool = True
    symmetric: bool = False
    group_size: int = 32

    def bits_of(self, layer: str) -> int:
        return self.layer_bits.get(layer, self.bits)

    def layers_at(self, layers: list[str], bits: int) -> list[str]:
        """Which of ``layers`` the plan puts at ``bits``."""
        return [name for name in layers if self.bits_of(name) == bits]


def weight_layers(model: nn.Module) -> list[str]:
    """Names of the Linear and convolution layers, in the order the model holds them."""
    return [name for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]
