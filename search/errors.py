"""The error a user sees for bad input: it names the setting, the rule and the value."""

from __future__ import annotations

from typing import Any


class TrialFailed(RuntimeError):
    """A trial ran but its result is unusable (e.g. a NaN metric); recorded failed with this reason."""


class ConfigError(ValueError):
    """An experiment config (or a file it names) is wrong; the CLI prints it and exits with code 2."""

    def __init__(self, key: str, rule: str, value: Any = None) -> None:
        self.key, self.rule, self.value = key, rule, value
        super().__init__(f"{key}: {rule}" + ("" if value is None else f", but got {value!r}"))
