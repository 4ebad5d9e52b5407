"""The knobs of a search space: a fixed value, an int or float range, a choice, or a conditional branch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

from squeezer.spaces.errors import SpaceError


@dataclass(frozen=True)
class Fixed:
    """A knob that is not searched."""

    value: Any

    def extremes(self) -> list[Any]:
        return [self.value]


@dataclass(frozen=True)
class Int:
    """An integer range with inclusive bounds."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def extremes(self) -> list[Any]:
        return [self.low, self.high]


@dataclass(frozen=True)
class Float:
    """A float range with inclusive bounds."""

    low: float
    high: float
    log: bool = False

    def extremes(self) -> list[Any]:
        return [self.low, self.high]


@dataclass(frozen=True)
class Choice:
    """One of a list of values."""

    options: tuple[Any, ...]

    def extremes(self) -> list[Any]:
        return list(self.options)


@dataclass(frozen=True)
class Branch:
    """A choice whose options carry their own knobs, sampled only when that option is picked."""

    options: dict[str, "Space"] = field(hash=False)

    def extremes(self) -> list[Any]:
        return list(self.options)


Knob = Union[Fixed, Int, Float, Choice, Branch]
Space = dict[str, Knob]


def parse_space(raw: Any, path: str = "") -> Space:
    """Parse a mapping of knob specs (``{int: [lo, hi]}``, ``{choice: [...]}``, plain values) into a space."""
    if not isinstance(raw, dict):
        raise SpaceError(path or "<root>", "must be a mapping of knob names to values or ranges", raw)
    space = {str(name): parse_knob(spec, _join(path, str(name))) for name, spec in raw.items()}
    for name, knob in space.items():
        if isinstance(knob, Branch):
            for option, sub in knob.options.items():
                clash = sorted(set(sub) & set(space))
                if clash:
                    raise SpaceError(_join(path, name), f"option {option!r} redeclares sibling knobs {clash}", sub)
    return space


def parse_knob(spec: Any, path: str) -> Knob:
    """Parse one knob spec; plain values (and mappings that are not range specs) are fixed."""
    if not isinstance(spec, dict) or not spec:
        return Fixed(spec)
    keys = set(spec)
    if "int" in keys:
        return _parse_int(spec, path)
    if "float" in keys:
        return _parse_float(spec, path)
    if "choice" in keys:
        return _parse_choice(spec, path)
    return Fixed(spec)


def _parse_int(spec: dict, path: str) -> Int:
    _only(spec, {"int", "log", "step"}, path)
    low, high = _bounds(spec["int"], path, "int")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
        raise SpaceError(path, "`int` bounds must be integers", spec["int"])
    log, step = bool(spec.get("log", False)), spec.get("step", 1)
    if not isinstance(step, int) or step < 1:
        raise SpaceError(path, "`step` must be a positive integer", step)
    if log and low < 1:
        raise SpaceError(path, "a log range needs `low >= 1`", f"low={low}")
    if log and step != 1:
        raise SpaceError(path, "`log` and `step` cannot be combined", spec)
    return Int(low, high, log, step)


def _parse_float(spec: dict, path: str) -> Float:
    _only(spec, {"float", "log"}, path)
    low, high = _bounds(spec["float"], path, "float")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise SpaceError(path, "`float` bounds must be numbers", spec["float"])
    if not all(math.isfinite(v) for v in (low, high)):
        raise SpaceError(path, "`float` bounds must be finite", spec["float"])
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise SpaceError(path, "a log range needs `low > 0`", f"low={low}")
    return Float(float(low), float(high), log)


def _parse_choice(spec: dict, path: str) -> Choice | Branch:
    _only(spec, {"choice"}, path)
    options = spec["choice"]
    if isinstance(options, dict) and options:
        return Branch({str(k): parse_space(v or {}, _join(path, str(k))) for k, v in options.items()})
    if not isinstance(options, list) or not options:
        raise SpaceError(path, "`choice` needs a non-empty list (or a mapping of option -> knobs)", options)
    if any(isinstance(o, (dict, list)) for o in options):
        raise SpaceError(path, "`choice` options must be plain values (str, number, bool, null)", options)
    if len(set(map(repr, options))) != len(options):
        raise SpaceError(path, "`choice` options must be distinct", options)
    return Choice(tuple(options))


def _bounds(raw: Any, path: str, kind: str) -> tuple[Any, Any]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        raise SpaceError(path, f"`{kind}` needs a list [low, high]", raw)
    low, high = raw
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
        raise SpaceError(path, "`low <= high` must hold", f"(low={low}, high={high})")
    return low, high


def _only(spec: dict, allowed: set[str], path: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise SpaceError(path, f"unknown range keys {unknown}; allowed: {sorted(allowed)}", spec)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
