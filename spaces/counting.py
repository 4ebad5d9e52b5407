"""How large a space is, its every recipe when it is finite, and how it reads to a person."""

from __future__ import annotations

from typing import Any

from squeezer.spaces.knobs import Branch, Choice, Fixed, Float, Int, Knob, Space


def size(space: Space) -> int | None:
    """The number of distinct recipes of ``space``; None where a float range makes it infinite."""
    total = 1
    for knob in space.values():
        count = _count(knob)
        if count is None:
            return None
        total *= count
    return total


def _count(knob: Knob) -> int | None:
    if isinstance(knob, Fixed):
        return 1
    if isinstance(knob, Float):
        return None
    if isinstance(knob, Int):
        return (knob.high - knob.low) // knob.step + 1
    if isinstance(knob, Choice):
        return len(knob.options)
    counts = [size(sub) for sub in knob.options.values()]
    return None if None in counts else sum(c for c in counts if c is not None)


def grid(space: Space, prefix: str = "") -> list[dict[str, Any]]:
    """Every recipe of a finite ``space``, as flat parameter names (``sample``'s) -> values."""
    points: list[dict[str, Any]] = [{}]
    for name, knob in space.items():
        path = f"{prefix}{name}"
        if isinstance(knob, Fixed):
            continue
        if isinstance(knob, Branch):
            options = [{path: option, **sub} for option, branch in knob.options.items()
                       for sub in grid(branch, f"{path}.{option}.")]
        elif isinstance(knob, Int):
            options = [{path: value} for value in range(knob.low, knob.high + 1, knob.step)]
        elif isinstance(knob, Choice):
            options = [{path: value} for value in knob.options]
        else:
            raise ValueError(f"{path}: a float range has no grid")
        points = [{**point, **option} for point in points for option in options]
    return points


def describe(space: Space, prefix: str = "") -> list[tuple[str, str]]:
    """Each searched knob by its flat name, with its range or choices (a branch's knobs after it)."""
    lines: list[tuple[str, str]] = []
    for name, knob in space.items():
        path = f"{prefix}{name}"
        if isinstance(knob, Fixed):
            continue
        if isinstance(knob, (Int, Float)):
            kind = "int" if isinstance(knob, Int) else "float"
            lines.append((path, f"{kind} in [{knob.low:g}, {knob.high:g}]" + (", log scale" if knob.log else "")))
        else:
            lines.append((path, "one of " + ", ".join(map(str, knob.options))))
        if isinstance(knob, Branch):
            for option, sub in knob.options.items():
                lines += describe(sub, f"{path}.{option}.")
    return lines
