"""Student (and teacher) families by name, each a function of the input shape, the class count and its searchable
settings: image and feature-table families in ``vision``, text families (over token ids) in ``text``, the user's own
in ``user``, all by name in ``registry``."""

from __future__ import annotations

import copy
import inspect
import math
import os
from typing import Any

import torch
from torch import nn

from squeezer.search.data import Tokens
from squeezer.search.errors import ConfigError
from squeezer.search.models import registry
from squeezer.search.models.checks import MAX_DEPTH, on_meta
from squeezer.search.models.registry import register

#: A student that is the teacher itself (copied with its trained weights), for the pipeline to compress.
TEACHER = "teacher"
#: A model passed as a Python object (``compress(teacher=...)``): built as a copy of that ``template``.
GIVEN = "given"
#: Given by the data and the study, not searched.
_CONTEXT = ("input_shape", "num_classes", "tokens", "teacher", "vocabulary")


#: The config's sections: an error key that starts with one is already whole.
SECTIONS = ("data", "teacher", "student", "pipeline", "measure", "training", "search")


def build(arch: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, key: str = "student", *,
          template: nn.Module | None = None,
          tokens: Tokens | None = None, teacher: nn.Module | None = None,
          vocabulary: torch.Tensor | None = None) -> nn.Module:
    """Build the model ``arch`` describes: ``family`` plus that family's keyword arguments. Text families need the
    data's ``tokens``; a family that can start from the teacher (``init: teacher``) gets ``teacher``, one that can
    keep only the tokens of the training texts (``vocab: seen``) their ids, ``vocabulary``."""
    arch = dict(arch)
    family = arch.pop("family", None)
    if family == GIVEN:
        if template is None:
            raise ConfigError(f"{key}.family", "given names the model passed as a Python object "
                              "(compress(teacher=...)); pass it again (export.load(..., template=model))", family)
        copied = copy.deepcopy(template)
        return copied.to("meta") if on_meta() else copied
    build_family = registry.get(family) if isinstance(family, str) else None
    if build_family is None:
        raise ConfigError(f"{key}.family", f"must be one of {registry.available()}"
                          + (f" (or {TEACHER!r}, for students)" if key == "student" else "")
                          + f"; packages add families under the entry-point group {registry.ENTRY_POINT_GROUP!r}",
                          family)
    if registry.reads_tokens(build_family) != (tokens is not None):
        kinds = registry.of_kind(text=tokens is not None)
        raise ConfigError(f"{key}.family", f"does not fit the data: {'text' if tokens else 'image or feature'} data "
                          f"needs one of {kinds}", family)
    params = inspect.signature(build_family).parameters
    known = [p for p, v in params.items() if p not in _CONTEXT and v.kind != v.VAR_KEYWORD]
    unknown = sorted(set(arch) - set(known))
    if unknown and not any(v.kind == v.VAR_KEYWORD for v in params.values()):  # user families take any setting
        raise ConfigError(f"{key}.{unknown[0]}", f"is not a setting of family {family!r}; its settings are {known}")
    context = {k: v for k, v in (("tokens", tokens), ("teacher", teacher), ("vocabulary", vocabulary))
               if k in params}
    try:
        return build_family(tuple(input_shape), num_classes, **context, **arch)
    except ConfigError as err:  # a family names its own setting; a key from the top (data.max_length) stays
        section = err.key.split(".")[0].split("[")[0]
        raise ConfigError(err.key if section in SECTIONS else f"{key}.{err.key}", err.rule, err.value) from None
    except TypeError as err:  # a value of the wrong type, e.g. a string depth
        raise ConfigError(key, f"family {family!r} rejected its settings ({err})", arch) from None


def resolve(arch: dict[str, Any], teacher: dict[str, Any]) -> dict[str, Any]:
    """The family and settings ``arch`` builds: a ``teacher`` student is the teacher's own (``teacher``: the
    teacher's family and settings)."""
    if arch.get("family") != TEACHER:
        return dict(arch)
    extra = sorted(set(arch) - {"family"})
    if extra:
        raise ConfigError(f"student.{extra[0]}", "family teacher takes no settings: it is the teacher, compressed by "
                          "the pipeline (prune, lowrank, quantize)", arch[extra[0]])
    return dict(teacher)


def check_fits(arch: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, batch_size: int,
               key: str = "student", tokens: Tokens | None = None, template: nn.Module | None = None) -> None:
    """Refuse a model whose training would not fit in the memory available, before allocating any of it.

    The model is built on the meta device (shapes only). Training needs its weights four times (weights, gradients,
    Adam's two moments) plus about three copies of a batch's activations, bounded from above by each layer's
    output size at the input's resolution (no forward pass: on the meta device that costs more than the check).
    """
    with torch.device("meta"):
        try:
            model = build(arch, input_shape, num_classes, key=key, tokens=tokens, template=template)
        except RuntimeError as err:  # e.g. a weight tensor whose size overflows 64 bits
            raise ConfigError(key, f"is too large to build ({str(err).splitlines()[0]})", arch) from None
    # Activations per sample: a Linear layer's outputs once per token for text, a conv layer's once per position.
    positions = input_shape[0] if tokens else math.prod(input_shape[1:]) if len(input_shape) == 3 else 1
    per_sample = sum(m.out_features * (positions if tokens else 1) if isinstance(m, nn.Linear)
                     else m.out_channels * positions
                     for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)))
    needed = 4 * (4 * sum(p.numel() for p in model.parameters()) + 3 * batch_size * per_sample)
    available = available_memory()
    if needed > available:
        raise ConfigError(key, f"needs about {needed / 2**30:.1f} GiB to train, more than the "
                          f"{available / 2**30:.1f} GiB of memory available", arch)


def available_memory() -> int:
    """Bytes of memory this process may still allocate (MemAvailable on Linux)."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


__all__ = ["GIVEN", "MAX_DEPTH", "TEACHER", "available_memory", "build", "check_fits", "register", "resolve"]
