"""Knowledge distillation: logit KD (one teacher or several), FitNets hints, attention transfer, EMA self-distillation,
mutual learning and pseudo-labels, with temperature schedules, Dynamic Weight Average and an adaptive controller.

One module per idea: ``losses`` (the formulas), ``schedules`` (T and DWA), ``controller`` (the adaptive controller),
``features`` (layers, pairing, projections), ``teachers`` (outputs computed once; EMA), ``sources`` (where soft labels
come from), ``trainer`` (one run), ``config`` (the settings and their rules).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from squeezer.compressors.base import Compressor, InvalidConfig, TrialContext
from squeezer.compressors.distill.config import DistillConfig
from squeezer.compressors.distill.features import pair_layers
from squeezer.compressors.distill.losses import kd_loss
from squeezer.compressors.distill.teacher_outputs import TeacherOutputs
from squeezer.compressors.distill.transformer import is_encoder, layer_map
from squeezer.compressors.distill.trainer import Distiller, check_probe, spatial_layers
from squeezer.compressors.registry import register


@register
class Distill(Compressor):
    """Train a copy of the student on what its teacher(s), its own EMA or a peer know, plus the labels."""

    name = "distill"
    searched = {"temperature": {"float": [1.0, 8.0], "log": True}, "soft_weight": {"float": [0.1, 0.9]},
                "hard_weight": {"float": [0.1, 0.9]}}
    Config = DistillConfig
    config: DistillConfig

    def untrained(self) -> None:
        return None  # distillation changes weights only

    def label(self) -> str:
        return f"T{self.config.temperature:.1f} α{self.config.soft_weight:.2g}"

    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        if self.config.augment:
            ctx = ctx.augmented(self.config.augment_copies)
        return Distiller(self.config, copy.deepcopy(model), ctx).run()

    def check_data(self, train_size: int) -> None:
        check_probe(self.config, train_size)

    def check_models(self, student: nn.Module, teachers: Sequence[nn.Module], example: torch.Tensor) -> None:
        c = self.config
        if c.augment and example.dtype != torch.int64:
            raise InvalidConfig("augment", "augments texts (token dropout, swap, span masking); this data is not "
                                "text (data.augment flips and crops images)", c.augment)
        if c.method != "kd":
            return
        if c.ensemble != "none" and len(teachers) < 2:
            raise InvalidConfig("ensemble", "needs more than one teacher; declare the others under "
                                "teacher.ensemble", c.ensemble)
        if is_encoder(teachers[0]):  # transformers: layers are numbers; other students skip these losses
            if is_encoder(student):
                layer_map(student.layers, teachers[0].layers, c.feature_layers)  # type: ignore[arg-type]
                layer_map(student.layers, teachers[0].layers, c.attention_layers,  # type: ignore[arg-type]
                          "attention_layers")
            return
        if c.feature_weight > 0:
            pair_layers(student, teachers[0], c.feature_layers, "feature_layers")
        if c.attention_weight > 0:
            spatial_t = spatial_layers(teachers[0], example)
            if not spatial_t:
                raise InvalidConfig("attention_weight", "needs a teacher with spatial feature maps (a CNN)",
                                    c.attention_weight)
            pair_layers(student, teachers[0], c.attention_layers, "attention_layers",
                        spatial_layers(student, example), spatial_t)
            others = [k for k, w in c.weights().items() if w > 0 and k != "attention"]
            if not others and not spatial_layers(student, example):
                raise InvalidConfig("attention_weight", "is the only active loss, but a student of this space has "
                                    "no spatial feature maps", c.attention_weight)


__all__ = ["Distill", "DistillConfig", "Distiller", "TeacherOutputs", "kd_loss"]
