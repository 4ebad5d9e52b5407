"""Knowledge distillation (Hinton et al., 2015): train the student on the teacher's softened outputs."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from squeezer.compressors.base import Compressor, CompressorConfig, TrialContext, check
from squeezer.compressors.registry import register
from squeezer.compressors.training import fit


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float) -> torch.Tensor:
    """α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y), batch-averaged.

    The T² keeps the soft term's gradients on the same scale as the hard term's as T changes.
    """
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


@dataclass(frozen=True)
class DistillConfig(CompressorConfig):
    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0

    def validate(self) -> None:
        check(self.temperature > 0, "temperature", "must be > 0", self.temperature)
        check(0 <= self.alpha <= 1, "alpha", "must be in [0, 1]", self.alpha)
        check(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "must be an integer >= 1", self.epochs)
        check(self.lr > 0, "lr", "must be > 0", self.lr)
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0", self.weight_decay)


@register
class Distill(Compressor):
    """Train a copy of the student against the teacher's logits with ``kd_loss``."""

    name = "distill"
    Config = DistillConfig
    config: DistillConfig

    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        if ctx.teacher_logits is None:
            raise ValueError("distill needs the teacher's logits in the trial context; declare a teacher")
        c = self.config
        student = copy.deepcopy(model)
        loss = lambda s, y, t: kd_loss(s, t, y, c.temperature, c.alpha)  # noqa: E731
        return fit(student, ctx, loss, epochs=c.epochs, lr=c.lr, weight_decay=c.weight_decay, stage=self.name)
