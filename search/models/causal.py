"""Causal language models: a teacher from a local ``save_pretrained`` directory (``AutoModelForCausalLM`` with its
tokenizer), checked before anything loads; and the student families of a language-model study, by name:

- ``teacher``: the teacher itself (a pipeline's ``lm_prune`` then drops its layers, heads and channels, as Minitron);
- ``smaller``: a new model of the teacher's architecture with fewer ``layers``, a narrower ``hidden`` size, fewer
  ``heads`` (of the teacher's head size) and MLP channels (``intermediate``), started from the teacher's weights
  (``compressors.lm.surgery.shrink``). Each size is an integer at most the teacher's, or a share in (0, 1] of it.

Families register with ``register`` (a function ``(teacher, calibration, **settings) -> model``), or from a package
under the entry-point group ``squeezer.lm_families`` (loaded when first named)."""

from __future__ import annotations

import copy
import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from squeezer.compressors.lm import surgery
from squeezer.search.errors import ConfigError
from squeezer.search.models.registry import lookup
from squeezer.search.models.user import load_function

CAUSAL_HEAD = ("ForCausalLM", "LMHeadModel")  # how a causal LM's class is named (GPT-2's: GPT2LMHeadModel)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
Family = Callable[..., nn.Module]
ENTRY_POINT_GROUP = "squeezer.lm_families"
BUILT_IN = ("teacher", "smaller")


def is_causal(path: Path) -> bool:
    """Whether a directory's ``config.json`` names a causal LM class (``...ForCausalLM``)."""
    try:
        names = json.loads((path / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(str(name).endswith(CAUSAL_HEAD) for name in names)


def check_dir(path: Path, key: str) -> dict[str, Any]:
    """Refuse a directory that holds no causal LM or no tokenizer, in one line; its config otherwise."""
    if not path.is_dir():
        raise ConfigError(key, "is not a directory (a save_pretrained folder of a causal language model)", str(path))
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        raise ConfigError(key, "holds no readable config.json: not a save_pretrained model folder", str(path)) from None
    if not any(str(a).endswith(CAUSAL_HEAD) for a in config.get("architectures") or []):
        raise ConfigError(key, f"holds no causal language model (its config names {config.get('architectures')}; "
                          f"a ...{CAUSAL_HEAD[0]} is needed)", str(path))
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(key, "holds no tokenizer (save it beside the model: tokenizer.save_pretrained(DIR))",
                          str(path))
    if config.get("model_type") not in surgery.LAYOUTS:  # refused before its weights load
        raise ConfigError(key, f"holds a {config.get('model_type')} model; Squeezer prunes and shrinks decoders of "
                          f"the Llama layout: {', '.join(surgery.LAYOUTS)}", str(path))
    return config


def quiet() -> None:
    """No transformers progress bars for loading and saving shards: Squeezer prints its own progress."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def load_teacher(path: Path, key: str) -> tuple[nn.Module, Any]:
    """The causal LM and tokenizer of a local directory, in eval mode, full precision, on the CPU."""
    check_dir(path, key)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        quiet()
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    except Exception as err:  # noqa: BLE001 - a user's folder: whatever fails to load, say so in one line
        raise ConfigError(key, f"does not load as a causal LM with its tokenizer ({type(err).__name__}: "
                          f"{(str(err).strip().splitlines() or [''])[0][:200]})", str(path)) from None
    return model.eval(), tokenizer


def from_factory(settings: Mapping[str, Any], tokenizer_dir: Path, key: str = "teacher") -> tuple[nn.Module, Any]:
    """The causal LM the user's function builds (``settings``: ``model`` "file.py:function" and its arguments; this
    imports and runs the user's code) and the tokenizer of ``tokenizer_dir``."""
    from transformers import AutoTokenizer

    settings = dict(settings)
    reference = str(settings.pop("model"))
    function = load_function(reference, f"{key}.model")
    try:
        model = function(**settings)
    except Exception as err:  # noqa: BLE001 - the user's code: whatever it raises, name it in one line
        raise ConfigError(f"{key}.model", f"{reference} raised {type(err).__name__}: "
                          f"{(str(err).strip().splitlines() or [''])[0]}", settings or None) from None
    check_causal(model, f"{key}.model")
    return model.eval(), AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)


def check_causal(model: Any, key: str) -> None:
    """A teacher object must be a causal LM as transformers builds them: a module with a config and ``generate``."""
    if not (isinstance(model, nn.Module) and hasattr(model, "config") and hasattr(model, "generate")
            and getattr(model.config, "vocab_size", None)):
        raise ConfigError(key, "must be a causal language model (a transformers ...ForCausalLM: a module with a "
                          "config and generate)", type(model).__name__)


def positions(model: nn.Module) -> int | None:
    """The longest sequence the model's position table takes (None: not bounded by a table)."""
    value = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    return int(value) if value else None


def teacher(teacher: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """The teacher itself, to be pruned by the pipeline's ``lm_prune``."""
    return copy.deepcopy(teacher)


def smaller(teacher: nn.Module, calibration: torch.Tensor, layers: float | None = None, hidden: float | None = None,
            heads: float | None = None, intermediate: float | None = None, layers_by: str = "importance") -> nn.Module:
    """A smaller model of the teacher's architecture, started from its weights (``surgery.shrink``)."""
    sizes = resolve_sizes(teacher, layers, hidden, heads, intermediate)
    scores = surgery.importance(teacher, calibration)
    model = surgery.shrink(teacher, *sizes, by=layers_by, scores=scores)
    model.config.squeezer_layer_map = surgery.kept_layers(sizes[0], len(surgery.layers_of(teacher)), layers_by,
                                                          scores.layers)
    return model.eval()


def resolve_sizes(teacher: nn.Module, layers: float | None, hidden: float | None, heads: float | None,
                  intermediate: float | None) -> tuple[int, int, int, int]:
    """(layers, hidden, heads, intermediate) of a ``smaller`` student: integers as given, floats as shares of the
    teacher's, unset ones the teacher's; each at most the teacher's. The head size stays the teacher's (as Minitron
    keeps it, so that attention carries over): ``heads`` is how many, and the hidden size is free of it."""
    config = teacher.config
    surgery.layers_of(teacher)

    def size(value: float | None, of: int, name: str) -> int:
        if value is None:
            return of
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"student.{name}", "must be a positive integer, or a share in (0, 1] of the teacher's",
                              value)
        found = max(1, round(value * of)) if isinstance(value, float) and value <= 1 else value
        if found != int(found) or found > of:
            raise ConfigError(f"student.{name}", f"must be an integer at most the teacher's {of}, or a share in "
                              "(0, 1] of it: a smaller student is smaller", value)
        return int(found)

    return (size(layers, config.num_hidden_layers, "layers"), size(hidden, config.hidden_size, "hidden"),
            size(heads, config.num_attention_heads, "heads"),
            size(intermediate, surgery.layers_of(teacher)[0].mlp.down_proj.in_features, "intermediate"))


_FAMILIES: dict[str, Family] = {"teacher": teacher, "smaller": smaller}
#: What a family named without settings searches.
SEARCHED: dict[str, dict[str, Any]] = {
    "smaller": {"layers": {"float": [0.25, 1.0]}, "hidden": {"choice": [0.5, 0.75, 1.0]},
                "heads": {"choice": [0.5, 1.0]}, "intermediate": {"float": [0.25, 1.0]}},
}


def register(name: str, searched: Mapping[str, Any] | None = None) -> Callable[[Family], Family]:
    """Decorator: a language-model student family ``(teacher, calibration, **settings) -> causal LM`` named
    ``name``; ``searched``: what it searches when named without settings."""
    def add(function: Family) -> Family:
        _FAMILIES[name] = function
        if searched:
            SEARCHED[name] = dict(searched)
        return function
    return add


def families() -> list[str]:
    """The names a language model's student may have: registered, and declared by installed packages."""
    return sorted({*_FAMILIES, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def build(settings: Mapping[str, Any], teacher: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """The student ``settings`` (``family`` and its settings) describes, from ``teacher``."""
    settings = dict(settings)
    name = settings.pop("family")
    family = lookup(_FAMILIES, ENTRY_POINT_GROUP, name)
    if family is None:
        raise ConfigError("student.family", f"must be one of {families()} for a language model", name)
    try:
        model = family(teacher, calibration, **settings)
    except TypeError as err:
        raise ConfigError("student", f"{name} does not take these settings ({err})", settings) from None
    if model.config.vocab_size != teacher.config.vocab_size:
        raise ConfigError("student.family", f"must share the teacher's vocabulary of {teacher.config.vocab_size} "
                          f"tokens; {name} has {model.config.vocab_size}", name)
    return model


__all__ = ["CAUSAL_HEAD", "SEARCHED", "build", "check_dir", "families", "is_causal", "load_teacher", "positions",
           "quiet", "register", "resolve_sizes"]
