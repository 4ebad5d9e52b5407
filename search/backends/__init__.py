"""Search backends: each schedules the trials of a ``Session`` and nothing else (one adapter module per backend).

A backend module has ``run(session, target)``, and may have ``check(settings)``: what it needs of its cluster,
checked before any store is written. Backends are imported only when used, so a missing optional
dependency is reported with its install hint instead of failing at import time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from squeezer.search.config.plugins import BACKENDS
from squeezer.search.errors import ConfigError


def load(name: str) -> ModuleType:
    """The backend module called ``name``."""
    if name not in BACKENDS:
        raise ConfigError("search.backend", f"must be one of {sorted(BACKENDS)}", name)
    module, requirement = BACKENDS[name]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise ConfigError("search.backend", f"needs {err.name!r}; install it with pip install '{requirement}'",
                          name) from None
