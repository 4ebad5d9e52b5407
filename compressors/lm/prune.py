"""``lm_prune``: Minitron-style structured pruning of a causal LM (``surgery``): depth (``keep_layers``, by
importance or every k-th) and width (``heads_ratio`` of the key/value groups with their query heads,
``mlp_ratio`` of the MLP channels), chosen by activation importance on calibration blocks of the training text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from squeezer.compressors.base import Compressor, CompressorConfig, check, is_number
from squeezer.compressors.lm import surgery
from squeezer.compressors.lm.context import LmContext
from squeezer.compressors.registry import register

LAYER_CHOICES = ("importance", "every")
CALIBRATION_BLOCKS = 32


@dataclass(frozen=True)
class LmPruneConfig(CompressorConfig):
    keep_layers: float = 1.0      # the share of layers kept (at least one)
    layers_by: str = "importance"
    heads_ratio: float = 1.0      # the share of key/value groups kept (at least one)
    mlp_ratio: float = 1.0        # the share of MLP channels kept (at least one)

    def validate(self) -> None:
        check(self.layers_by in LAYER_CHOICES, "layers_by", f"must be one of {list(LAYER_CHOICES)}", self.layers_by)
        for name in ("keep_layers", "heads_ratio", "mlp_ratio"):
            value = getattr(self, name)
            check(is_number(value) and 0 < value <= 1, name, "must be a share in (0, 1]", value)


@register
class LmPrune(Compressor):
    name = "lm_prune"
    Config = LmPruneConfig
    task = "language_model"
    searched: ClassVar[dict[str, Any]] = {"keep_layers": {"float": [0.25, 1.0]},
                                          "layers_by": {"choice": list(LAYER_CHOICES)},
                                          "heads_ratio": {"float": [0.25, 1.0]},
                                          "mlp_ratio": {"float": [0.25, 1.0]}}

    def label(self) -> str:
        c = self.config
        return f"keep {c.keep_layers:.0%} layers, {c.heads_ratio:.0%} heads, {c.mlp_ratio:.0%} mlp"

    def sizes(self, model: nn.Module) -> tuple[int, int, int]:
        """The layers, key/value groups and MLP channels ``model`` keeps under this config."""
        config, layers = model.config, surgery.layers_of(model)
        c = self.config
        groups, per_group = config.num_key_value_heads, config.num_attention_heads // config.num_key_value_heads
        # the kept heads must divide the hidden size (transformers' configs insist): the nearest such count below
        fitting = [g for g in range(1, groups + 1) if config.hidden_size % (g * per_group) == 0]
        wanted = max(1, round(c.heads_ratio * groups))
        kept = max([g for g in fitting if g <= wanted], default=min(fitting))
        return (max(1, round(c.keep_layers * len(layers))), kept,
                max(1, round(c.mlp_ratio * layers[0].mlp.down_proj.in_features)))

    def check_models(self, student: nn.Module, teachers: Any, example: torch.Tensor) -> None:
        self.sizes(student)  # a model of another layout than Llama's is refused

    def apply(self, model: nn.Module, ctx: LmContext) -> nn.Module:  # type: ignore[override]
        layers, groups, channels = self.sizes(model)
        calibration = ctx.train[:CALIBRATION_BLOCKS].to(next(model.parameters()).device)
        scores = surgery.importance(model, calibration)
        pruned = surgery.prune(model, layers, groups, channels, self.config.layers_by, scores)
        kept = surgery.kept_layers(layers, len(surgery.layers_of(model)), self.config.layers_by, scores.layers)
        source = getattr(model.config, "squeezer_layer_map", None) or list(range(len(surgery.layers_of(model))))
        pruned.config.squeezer_layer_map = [source[i] for i in kept]  # the teacher's layers the student's came from
        return pruned


__all__ = ["LAYER_CHOICES", "LmPrune", "LmPruneConfig"]
