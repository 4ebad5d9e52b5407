"""The adaptive controller: each epoch, measure how well knowledge transfers and set T and the loss weights from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F

#: Losses that carry the teacher's knowledge; the hard-label loss is the other side of the balance.
TEACHER_LOSSES = ("soft", "feature", "attention")


@dataclass(frozen=True)
class Transfer:
    """How close the student is to its teacher on held-out training samples."""

    agreement: float   # fraction where the student's top class is the teacher's
    kl: float          # KL(teacher ‖ student) at T = 1, batch-averaged


@torch.no_grad()
def transfer(student_logits: torch.Tensor, target_log_probs: torch.Tensor) -> Transfer:
    """Agreement and KL between the student and its soft-label source (log-probabilities at T = 1)."""
    agreement = (student_logits.argmax(1) == target_log_probs.argmax(1)).float().mean().item()
    kl = F.kl_div(F.log_softmax(student_logits, 1), target_log_probs, reduction="batchmean", log_target=True).item()
    return Transfer(agreement, kl)


class AdaptiveController:
    """Sets each epoch's temperature and loss-weight multipliers from the measured transfer.

    With disagreement ``d = 1 − agreement`` (``d₀`` before training):
    - T = ``end + (start − end)·d/d₀``: soft targets stay soft while the student disagrees, and sharpen towards
      ``end`` as it catches up;
    - the teacher's losses (soft, feature, attention) weigh ``1 + gain·d``, the hard labels ``1 + gain·(1 − d)``:
      the teacher leads while the student lags it, the labels lead once it has absorbed what the teacher knows.
    """

    def __init__(self, start: float, end: float, gain: float) -> None:
        self.start, self.end, self.gain = start, end, gain
        self.initial: Transfer | None = None

    def update(self, measured: Transfer) -> tuple[float, dict[str, float]]:
        """The temperature and the weight multipliers for the next epoch."""
        if self.initial is None:
            self.initial = measured
        d, d0 = 1 - measured.agreement, max(1e-6, 1 - self.initial.agreement)
        temperature = self.end + (self.start - self.end) * min(1.0, d / d0)
        multipliers: Mapping[str, float] = {**{k: 1 + self.gain * d for k in TEACHER_LOSSES},
                                            "hard": 1 + self.gain * (1 - d)}
        return temperature, dict(multipliers)
