"""Pareto-aware early stopping: stop a trial that cannot reach the Pareto front, whatever its training still does.

Optuna cannot prune multi-objective trials, and ASHA ranks on accuracy alone (it stops the small, fast students a
front needs). Here a trial's size and speed are known before it trains (``trial.run.cheap_metrics``); after each epoch
its validation accuracy plus a headroom is the best accuracy it may still end with. The headroom is learnt: the most
any finished trial gained from that stage's epoch to its final accuracy, plus a margin (``allowance``). If a trial on
the current front beats that optimistic point on every objective, the trial stops, and says which trial beat it.
Until enough trials have finished (``MIN_CURVES``), nothing is stopped.

It judges studies whose one trained objective is accuracy (``objectives.only_quality_trained``). The optimistic
point is generous on purpose: latency measured before training may come out lower once measured again (timing
noise: at 0.03 ms a busy machine tripled one reading in the benchmark), so it is taken ``speed_allowance`` (half)
lower; bytes and counts are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from squeezer.compressors.base import Report
from squeezer.search.results.pareto import dominates
from squeezer.search.trial.run import StoppedEarly

ACCURACY = "accuracy"
MIN_CURVES = 3
NOISY = ("latency_ms", "latency_p90_ms", "latency_batch_ms", "latency_batch_p90_ms", "throughput")


@dataclass
class ParetoStop:
    """The rule for one trial, against a snapshot of the front: ``(trial number, metrics)`` of each member.

    ``shadow``: decide, but never stop; the first verdict is kept in ``would_stop`` (to audit the rule).
    """

    objectives: Mapping[str, str]
    front: Sequence[tuple[int, Mapping[str, float]]]
    headroom: Mapping[tuple[str, int], float]  # (stage, epoch) -> the most a finished trial gained from there
    allowance: float = 0.02
    speed_allowance: float = 0.5
    shadow: bool = False
    would_stop: str | None = field(default=None, init=False)
    cheap: Mapping[str, float] | None = field(default=None, init=False)  # what the trial was judged on

    def watch(self, cheap: Mapping[str, float]) -> Report | None:
        """The per-epoch hook for a trial with these cheap metrics (None when there is no front to beat yet)."""
        self.cheap = cheap
        if not self.front:
            return None

        def check(epoch: int, metrics: Mapping[str, float]) -> None:
            read = val_curve([(epoch, metrics)])
            if not read or self.would_stop is not None or read[0][:2] not in self.headroom:
                return
            stage, _, accuracy = read[0]
            reason = self.verdict(cheap, accuracy, self.headroom[stage, epoch] + self.allowance)
            if reason is None:
                return
            self.would_stop = f"stopped early after {stage} epoch {epoch + 1}: {reason}"
            if not self.shadow:
                raise StoppedEarly(self.would_stop)
        return check

    def verdict(self, cheap: Mapping[str, float], accuracy: float, gain: float) -> str | None:
        """Why a trial with ``cheap`` metrics, validation ``accuracy`` and at most ``gain`` to come cannot reach the
        front; None if it can."""
        best = self.optimistic(cheap, accuracy + gain)
        for number, member in self.front:
            if dominates([member[n] for n in self.objectives], [best[n] for n in self.objectives],
                         list(self.objectives.values())):
                return (f"val accuracy {accuracy:.4f} (+{gain:.3f} allowed) at "
                        f"{_describe(cheap, self.objectives)} is beaten by trial {number} "
                        f"({_describe(member, self.objectives)})")
        return None

    def optimistic(self, cheap: Mapping[str, float], accuracy: float) -> dict[str, float]:
        best = {ACCURACY: accuracy}
        for name in self.objectives:
            if name in cheap:
                slack = self.speed_allowance if name in NOISY else 0.0
                better = 1 + slack if self.objectives[name] == "maximize" else 1 - slack
                best[name] = cheap[name] * better
        return best


def val_curve(curves: Sequence[tuple[int, Mapping[str, float]]]) -> list[tuple[str, int, float]]:
    """``(stage, epoch, validation accuracy)`` of each epoch a trial reported: what the headroom is learnt from."""
    return [(name.split(".")[0], step, value) for step, values in curves for name, value in values.items()
            if name.endswith(".val_accuracy")]


def headroom(finished: Sequence[tuple[Sequence[tuple[str, int, float]], float]]) -> dict[tuple[str, int], float]:
    """The most any trial gained from each ``(stage, epoch)`` to its final accuracy, over ``finished`` trials'
    ``(val_curve, final accuracy)``; empty until ``MIN_CURVES`` trials have finished."""
    if len(finished) < MIN_CURVES:
        return {}
    gains: dict[tuple[str, int], float] = {}
    for curve, final in finished:
        for stage, epoch, value in curve:
            gains[stage, epoch] = max(gains.get((stage, epoch), -1.0), final - value)
    return gains


def _describe(metrics: Mapping[str, float], objectives: Mapping[str, str]) -> str:
    return ", ".join(f"{name} {metrics[name]:.4g}" for name in objectives if name in metrics)
