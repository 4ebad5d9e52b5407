"""The plugins an experiment file may name, by kind: the one list of allowed names of each kind, which validation
reads, and where each is built — a dotted path, imported only where it is used, by the layer that uses it. Nothing
here imports what it names (compressors, model families and runtimes keep their own tables, in layers below)."""

from __future__ import annotations

import importlib
from typing import Any

#: ``search.backend`` -> (its module, what ``pip install`` brings it)
BACKENDS: dict[str, tuple[str, str]] = {"optuna": ("squeezer.search.backends.optuna", "optuna"),
                                        "ray": ("squeezer.search.backends.ray", "ray[tune]")}

#: ``search.sampler`` -> its factory ``(search settings, seed) -> optuna.samplers.BaseSampler``
SAMPLERS: dict[str, str] = {"squeezer": "squeezer.search.study.samplers:squeezer",
                            "nsga2": "squeezer.search.study.samplers:nsga2",
                            "tpe": "squeezer.search.study.samplers:tpe",
                            "random": "squeezer.search.study.samplers:random"}


def resolve(path: str) -> Any:
    """What a ``module:name`` path names, imported now."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
