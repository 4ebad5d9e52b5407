"""Pick by budget: the most accurate Pareto member within a size, latency and accuracy budget (``squeezer pick``),
or, where none fits, the one that comes closest."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from squeezer.search.config.objectives import quality_of
from squeezer.search.errors import ConfigError

UNITS_BYTES = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}  # as the tables print sizes
UNITS_MS = {"US": 1e-3, "MS": 1.0, "S": 1e3}
_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def amount(text: str, units: Mapping[str, float], default: str, key: str, example: str) -> float:
    """``"100KB"``, ``"0.1ms"``, ``"2 MB"``: a positive number with one of ``units`` (``default`` when none)."""
    match = _AMOUNT.match(str(text))
    unit = (match.group(2) or default).upper() if match else ""
    if not match or unit not in units or float(match.group(1)) <= 0:
        raise ConfigError(key, f"must be a positive number with a unit of {list(units)} (e.g. {example})", text)
    return float(match.group(1)) * units[unit]


@dataclass(frozen=True)
class Budget:
    max_size: float | None = None       # bytes
    max_latency: float | None = None    # ms
    min_accuracy: float | None = None   # validation accuracy
    max_perplexity: float | None = None  # a language model's validation perplexity

    def overrun(self, metrics: Mapping[str, float]) -> float:
        """How far ``metrics`` are outside the budget, as the largest ratio over a bound (1 or less: within)."""
        ratios = [1.0]
        if self.max_size is not None:
            ratios.append(metrics["size_bytes"] / self.max_size)
        if self.max_latency is not None:
            ratios.append(metrics["latency_ms"] / self.max_latency)
        if self.min_accuracy is not None:
            ratios.append(self.min_accuracy / max(metrics.get("accuracy", 0.0), 1e-12))
        if self.max_perplexity is not None:
            ratios.append(metrics.get("perplexity", math.inf) / self.max_perplexity)
        return max(ratios)

    def describe(self) -> str:
        bounds = [f"size <= {self.max_size:.0f} bytes" if self.max_size is not None else "",
                  f"latency <= {self.max_latency:g} ms" if self.max_latency is not None else "",
                  f"accuracy >= {self.min_accuracy:g}" if self.min_accuracy is not None else "",
                  f"perplexity <= {self.max_perplexity:g}" if self.max_perplexity is not None else ""]
        return ", ".join(b for b in bounds if b) or "no budget"


def pick(members: Sequence[tuple[int, Mapping[str, float]]], budget: Budget) -> tuple[int | None, int | None, str]:
    """``(picked, closest, why)``: the most accurate member within ``budget`` (the smaller of equal ones), or None
    and the member closest to it (the least overrun)."""
    if not members:
        return None, None, "the study has no Pareto member"
    within = [(n, m) for n, m in members if budget.overrun(m) <= 1]
    if within:
        q = quality_of(within[0][1])
        number, metrics = max(within, key=lambda nm: (nm[1][q.metric] if q.higher_is_better else -nm[1][q.metric],
                                                      -nm[1]["size_bytes"]))
        return number, None, (f"the {'most accurate' if q.higher_is_better else 'least perplexed'} of "
                              f"{len(within)} member(s) within {budget.describe()} (validation {q.metric} "
                              f"{metrics[q.metric]:.4f})")
    number, metrics = min(members, key=lambda nm: budget.overrun(nm[1]))
    return None, number, (f"no member fits {budget.describe()}; the closest is trial {number} "
                          f"({_figures(metrics)}: {budget.overrun(metrics):.2f}x over its tightest bound)")


def _figures(metrics: Mapping[str, Any]) -> str:
    q = quality_of(metrics).metric
    return (f"{q} {metrics[q]:.4f}, {metrics['size_bytes']:.0f} bytes, "
            f"{metrics['latency_ms']:.3f} ms")


__all__ = ["Budget", "UNITS_BYTES", "UNITS_MS", "amount", "pick"]
