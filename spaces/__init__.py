"""Declarative joint search spaces, declared once and translated to each search backend.

This package knows nothing of torch: a space is plain data.
"""

from squeezer.spaces.counting import describe, grid, size
from squeezer.spaces.errors import SpaceError
from squeezer.spaces.knobs import Branch, Choice, Fixed, Float, Int, Knob, Space, parse_knob, parse_space
from squeezer.spaces.sampling import boundary_points, leaves, plain_names, sample

__all__ = [
    "Branch", "Choice", "Fixed", "Float", "Int", "Knob", "Space", "SpaceError",
    "boundary_points", "describe", "grid", "leaves", "parse_knob", "parse_space", "plain_names", "sample", "size",
]
