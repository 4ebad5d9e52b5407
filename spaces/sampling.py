"""Walk a space once, asking a backend for each leaf value: the one sampling routine every backend shares."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from squeezer.spaces.knobs import Branch, Fixed, Knob, Space

#: ``suggest(name, knob) -> value`` for every searched leaf knob (Int, Float, Choice, or a Branch's option).
Suggest = Callable[[str, Knob], Any]


def sample(space: Space, suggest: Suggest, prefix: str = "") -> dict[str, Any]:
    """Return concrete values for ``space``; a Branch contributes its option and that option's knobs."""
    values: dict[str, Any] = {}
    for name, knob in space.items():
        path = f"{prefix}{name}"
        if isinstance(knob, Fixed):
            values[name] = knob.value
            continue
        values[name] = suggest(path, knob)
        if isinstance(knob, Branch):
            values.update(sample(knob.options[values[name]], suggest, f"{path}.{values[name]}."))
    return values


def leaves(space: Space, prefix: str = "") -> dict[str, Knob]:
    """Every searched knob by its flat parameter name, Branch options' knobs included."""
    found: dict[str, Knob] = {}
    for name, knob in space.items():
        path = f"{prefix}{name}"
        if isinstance(knob, Fixed):
            continue
        found[path] = knob
        if isinstance(knob, Branch):
            for option, sub in knob.options.items():
                found.update(leaves(sub, f"{path}.{option}."))
    return found


def boundary_points(space: Space) -> list[dict[str, Any]]:
    """Assignments that put each knob, one at a time, at each of its extremes: enough to validate a range up front."""
    base = {name: knob.extremes()[0] for name, knob in space.items()}
    points = []
    for name, knob in space.items():
        for value in knob.extremes():
            if isinstance(knob, Branch):
                for sub_point in boundary_points(knob.options[value]):
                    points.append({**base, name: value, **sub_point})
            else:
                points.append({**base, name: value})
    return points or [{}]


def plain_names(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the Branch segment from flat names for display.

    ``{'student.family': 'cnn', 'student.family.cnn.depth': 2}`` -> ``{'student.family': 'cnn', 'student.depth': 2}``
    """
    prefixes = sorted(((f"{branch}.{option}.", branch) for branch, option in params.items()),
                      key=lambda pair: -len(pair[0]))  # the innermost branch first: choices nest in choices
    renamed = {}
    for name, value in params.items():
        while match := next(((prefix, branch) for prefix, branch in prefixes if name.startswith(prefix)), None):
            prefix, branch = match
            name = f"{branch.rpartition('.')[0]}.{name[len(prefix):]}".lstrip(".")
        renamed[name] = value
    return renamed
