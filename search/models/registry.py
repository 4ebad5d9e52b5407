"""Model families by name: the built-in ones, those registered from Python (``register``), and those a package
declares under the entry-point group ``squeezer.families`` (loaded when first named).

A family is a function ``(input_shape, num_classes, **settings) -> nn.Module``; it takes ``tokens`` when it reads
token ids (a text family), ``teacher`` when it may start from the teacher's weights, and ``vocabulary`` (the token
ids the training texts use) when it may keep only those."""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

from torch import nn

from squeezer.search.models import text, words
from squeezer.search.models.hub import hf_image
from squeezer.search.models.user import factory, program, torchvision
from squeezer.search.models.vision import cnn, mlp

Family = Callable[..., nn.Module]
ENTRY_POINT_GROUP = "squeezer.families"
_REGISTRY: dict[str, Family] = {"mlp": mlp, "cnn": cnn, "hf": text.hf, "bert": text.bert, "bag": words.bag,
                                "textcnn": words.textcnn, "ngram": words.ngram, "factory": factory,
                                "torchvision": torchvision, "program": program, "hf_image": hf_image}


#: What a family named without settings searches (``family: cnn``, or ``cnn: {}`` among a choice's options): a space
#: as the experiment file writes one. A family not listed (the teacher, a factory) has no architecture knobs.
SEARCHED: dict[str, dict[str, Any]] = {
    "mlp": {"depth": {"int": [1, 2]}, "width": {"int": [16, 256], "log": True}},
    "cnn": {"depth": {"int": [1, 2]}, "channels": {"int": [4, 32], "log": True}, "kernel": {"choice": [3, 5]},
            "hidden": {"int": [16, 128], "log": True}},
    "bag": {"dim": {"int": [16, 128], "log": True}, "hidden": {"int": [16, 128], "log": True}},
    "textcnn": {"dim": {"int": [16, 128], "log": True}, "channels": {"int": [16, 128], "log": True},
                "kernel": {"choice": [3, 5]}},
    "ngram": {"dim": {"int": [16, 128], "log": True}},
    "bert": {"layers": {"int": [1, 3]}, "hidden": {"choice": [64, 128, 256]}, "heads": {"choice": [2, 4]},
             "intermediate": {"choice": [256, 512]}},
}


def register(name: str, searched: Mapping[str, Any] | None = None) -> Callable[[Family], Family]:
    """Decorator: make a family function available as ``family: name``; ``searched``: what it searches when named
    without settings (e.g. ``{"width": {"int": [16, 256], "log": True}}``)."""
    def add(function: Family) -> Family:
        _REGISTRY[name] = function
        if searched:
            SEARCHED[name] = dict(searched)
        return function
    return add


def get(name: str) -> Family | None:
    """The family registered as ``name`` (an entry point is imported now: that runs its package's code), or None."""
    return lookup(_REGISTRY, ENTRY_POINT_GROUP, name)


def lookup(table: dict[str, Family], group: str, name: str) -> Family | None:
    """``table[name]``; else the entry point of that name in ``group``, loaded into ``table`` (importing it runs its
    package's code); else None."""
    if name not in table:
        found = [ep for ep in entry_points(group=group) if ep.name == name]
        if found:
            table[name] = found[0].load()
    return table.get(name)


def available() -> list[str]:
    """Every family name: registered, and declared by installed packages (not imported for this)."""
    return sorted(set(_REGISTRY) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def of_kind(text: bool) -> list[str]:
    """The registered families that build text models (``text``) or image and feature models."""
    return sorted(name for name, family in _REGISTRY.items() if reads_tokens(family) == text)


def reads_tokens(family: Family) -> bool:
    """Whether a family builds text models (it takes the data's ``tokens``)."""
    return "tokens" in inspect.signature(family).parameters


__all__ = ["ENTRY_POINT_GROUP", "Family", "SEARCHED", "available", "get", "lookup", "of_kind", "reads_tokens",
           "register"]
