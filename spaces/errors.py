"""The one error type for a bad search-space declaration."""

from __future__ import annotations

from typing import Any


class SpaceError(ValueError):
    """A knob is declared wrongly; the message names the knob, the rule and the value."""

    def __init__(self, knob: str, rule: str, value: Any) -> None:
        self.knob, self.rule, self.value = knob, rule, value
        super().__init__(f"{knob}: {rule}, but got {value!r}")
