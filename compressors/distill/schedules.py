"""How the temperature and the loss weights move from epoch to epoch (the adaptive controller has its own module)."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

TEMPERATURE_SCHEDULES = ("constant", "linear", "cosine", "gap")


def temperature_at(schedule: str, epoch: int, epochs: int, start: float, end: float,
                   gap_ratio: float = 1.0) -> float:
    """T for ``epoch`` (0-based) of ``epochs``.

    ``linear`` and ``cosine`` anneal from ``start`` to ``end`` over the run; ``gap`` follows the student–teacher gap,
    ``end + (start − end)·gap_ratio``, where ``gap_ratio`` is the current gap over the gap before training (clipped
    to [0, 1]), so T reaches ``end`` as the student closes the gap.
    """
    progress = epoch / max(1, epochs - 1)
    if schedule == "linear":
        return start + (end - start) * progress
    if schedule == "cosine":
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "gap":
        return end + (start - end) * min(1.0, max(0.0, gap_ratio))
    return start


class DynamicWeightAverage:
    """Dynamic Weight Average (Liu, Johns & Davison, 2019) over named losses.

    For epoch t ≥ 2, ``w_k = K·exp(r_k / T) / Σ_i exp(r_i / T)`` with ``r_k = L_k(t−1) / L_k(t−2)``: a loss that
    falls slowly gets more weight. The first two epochs weigh every loss 1. Multiplies the configured weights.
    """

    def __init__(self, names: Sequence[str], temperature: float) -> None:
        self.names, self.temperature = list(names), temperature
        self.history: list[dict[str, float]] = []

    def record(self, epoch_losses: Mapping[str, float]) -> None:
        """Add one epoch's mean (unweighted) loss per name."""
        self.history.append({k: float(epoch_losses[k]) for k in self.names})

    def multipliers(self) -> dict[str, float]:
        if len(self.history) < 2:
            return {k: 1.0 for k in self.names}
        last, before = self.history[-1], self.history[-2]
        ratios = {k: last[k] / before[k] if before[k] > 0 else 1.0 for k in self.names}
        exps = {k: math.exp(r / self.temperature) for k, r in ratios.items()}
        total = sum(exps.values())
        return {k: len(self.names) * e / total for k, e in exps.items()}
