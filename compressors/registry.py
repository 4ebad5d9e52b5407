"""Compressors by name: the built-ins register on import, third parties through the entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from squeezer.compressors.base import Compressor

ENTRY_POINT_GROUP = "squeezer.compressors"
_REGISTRY: dict[str, type[Compressor]] = {}


class UnknownCompressor(KeyError):
    """No compressor has this name; the message lists the known ones."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name, self.known = name, known
        super().__init__(name)

    def __str__(self) -> str:
        return (f"unknown compressor {self.name!r}; known compressors are {self.known}. "
                f"Third-party compressors register under the entry-point group {ENTRY_POINT_GROUP!r}.")


def register(cls: type[Compressor]) -> type[Compressor]:
    """Class decorator: make ``cls`` available by ``cls.name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a class attribute `name` to be registered")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Compressor]:
    """The compressor class registered as ``name``."""
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise UnknownCompressor(name, available())
    return _REGISTRY[name]


def available() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = ep.load()
