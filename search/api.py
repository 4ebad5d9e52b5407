"""Squeezer from Python: ``compress`` runs the same study as ``squeezer search`` (same storage, MLflow layout and
resume rules), with the teacher and the data given as objects if you like.

    from squeezer.search import compress
    result = compress("experiment.yaml", teacher=my_model, train=train_ds, val=val_ds, test=test_ds, trials=30)
    result.front          # the Pareto members: trial number, metrics (test_accuracy too) and recipe
    result.recommended    # the recommended member: the cheapest keeping 97 % of the teacher's accuracy
    result.export(result.recommended, "out/", format="onnx")

A causal language model (a transformers ``...ForCausalLM``) is given with its ``tokenizer`` (an object, or its
folder) and the config's text (``data: {path: ...}``): ``compress(config, teacher=lm, tokenizer=tokenizer)``.

A teacher given as an ``nn.Module`` is used as it is (no training); data given as ``(x, y)`` arrays or tensors, a
``torch.utils.data.Dataset`` of ``(x, y)`` or a ``DataLoader`` of batches is read into memory once. Bad arguments
raise ``ValueError`` with the one line the command line prints.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from squeezer.search.config.experiment import ExperimentConfig, parse_config, with_search
from squeezer.search.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from squeezer.search.errors import ConfigError
from squeezer.search.config.yamlfile import read_yaml

#: What ``compress`` searches when no config is given: the teacher itself and small MLP students, through the default
#: pipeline with each step's searched defaults (distilled, pruned, fp32/fp16/int8), as an experiment file that names
#: no pipeline does.
DEFAULTS: dict[str, Any] = {"name": "squeezer", "seed": 0, "search": {"trials": 20}}


@dataclass(frozen=True)
class Member:
    """One trial of the front: ``member.number``, ``member.accuracy`` (any metric, as an attribute or a key),
    ``member.params`` (the recipe)."""

    number: int
    metrics: Mapping[str, float]
    params: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> float:
        try:
            return self.metrics[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self.number if name == "number" else self.metrics[name]


@dataclass(frozen=True)
class Result:
    """A finished study: its Pareto members, the recommended one, and how to hand one over."""

    study_name: str
    front: list[Member]
    recommended: Member | None
    tracking_uri: str

    def __iter__(self) -> Iterator[Member]:
        return iter(self.front)

    def export(self, trial: Member | int, out: str | Path, format: str | None = None) -> Path:  # noqa: A002
        """What ``squeezer export`` writes (the model and its README; ``format`` None: a language model's ONNX
        Runtime GenAI folder where it was measured there, else its save_pretrained folder; a classifier's ONNX);
        returns the README's path."""
        from squeezer.search.study.destinations import check_out
        from squeezer.search.results.formats import FORMATS
        from squeezer.search.results.trial_export import export_trial

        number = trial.number if isinstance(trial, Member) else trial
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise ConfigError("trial", "must be a front member or a trial number >= 0", trial)
        if format is not None and format not in FORMATS:
            raise ConfigError("format", f"must be one of {sorted(FORMATS)}", format)
        check_out(Path(out), "out")
        return export_trial(self.tracking_uri, self.study_name, number, Path(out), format)


def compress(config: str | Path | Mapping[str, Any] | None = None, *, teacher: nn.Module | None = None,
             train: Any = None, val: Any = None, test: Any = None, trials: int | None = None,
             study_name: str | None = None, storage: str = DEFAULT_STORAGE,
             tracking_uri: str = DEFAULT_TRACKING_URI, seed: int | None = None, backend: str | None = None,
             quiet: bool = False, tokenizer: Any = None) -> Result:
    """Run (or resume) a compression study and return its front. ``config``: an experiment file, a mapping of the
    same sections, or None for defaults that fit the teacher (the teacher itself compressed, and MLP students).
    ``teacher``, ``train``/``val``/``test``: objects that replace the config's teacher and data; ``tokenizer``: a
    causal language model teacher's (an object or its folder). Keyword arguments mirror the command line's flags."""
    from squeezer.search.config.objectives import quality_of
    from squeezer.search.results.pareto import pareto_trials
    from squeezer.search.runner import run_study
    from squeezer.search.trial.workbench import Given
    from squeezer.search.trial import records

    raw, base = _raw(config)
    language_model = teacher is not None and _is_causal(teacher)
    if tokenizer is not None and not language_model:
        raise ConfigError("tokenizer", "goes with a causal language model teacher (teacher=a ...ForCausalLM)",
                          type(tokenizer).__name__)
    if language_model:
        if tokenizer is None:
            raise ConfigError("tokenizer", "is needed with a causal language model teacher: its tokenizer, or the "
                              "folder it was saved to", None)
        tokenizer = _tokenizer(tokenizer)
        raw["teacher"] = {"family": "given_causal", "given": _digest_module(teacher)}
    elif teacher is not None:
        if not isinstance(teacher, nn.Module):
            raise ConfigError("teacher", "must be a torch.nn.Module", type(teacher).__name__)
        raw["teacher"] = {"family": "given", "given": _digest_module(teacher)}
    parts = None
    if train is not None:  # the data section stands for the arrays (known by their digest), with its split settings
        parts, digest = _parts(train, val, test)
        raw["data"] = {k: v for k, v in (raw.get("data") or {}).items() if k in ("val_fraction", "test_fraction",
                                                                                 "standardize")} | {"given": digest}
    elif val is not None or test is not None:
        raise ConfigError("train", "is needed when val or test are given as objects")
    if config is None and teacher is None:
        raise ConfigError("teacher", "is needed without a config: pass teacher=your_model (or a config file)")
    if trials is not None and (not isinstance(trials, int) or isinstance(trials, bool) or trials < 1):
        raise ConfigError("trials", "must be an integer >= 1", trials)
    parsed: ExperimentConfig = with_search(parse_config(raw, base), backend=backend)
    splits = None
    if parts is not None:
        from squeezer.search.data import given_splits

        spec = parsed.data  # a given module expects the data as you have it, unless you say otherwise
        splits = given_splits(parts["train"], parts["val"], parts["test"], spec.val_fraction, spec.test_fraction,
                              parsed.seed if seed is None else seed, spec.standardize)
    result = run_study(parsed, trials=trials, study_name=study_name, storage=storage, tracking_uri=tracking_uri,
                       seed=seed, quiet=quiet, given=Given(teacher, splits, tokenizer))
    recorded = records.StudyRecord.of(result.study)
    metric = quality_of(recorded.teacher or {}).test_metric  # test_accuracy, test_perplexity
    members = [Member(t.number, {**records.metrics(t), **({metric: recorded.tested[t.number]}
                                                           if t.number in recorded.tested else {})}, dict(t.params))
               for t in pareto_trials(result.study, parsed.objectives)]
    recommended = recorded.recommended
    from squeezer.search.locking import absolute

    return Result(study_name or parsed.name, members, next((m for m in members if m.number == recommended), None),
                  absolute(tracking_uri))


def _raw(config: Any) -> tuple[dict[str, Any], Path]:
    if config is None:
        return copy.deepcopy(DEFAULTS), Path(".")
    if isinstance(config, (str, Path)):
        return read_yaml(Path(config)), Path(config).parent
    if isinstance(config, Mapping):  # named as the no-config study is, unless it says otherwise
        return {"name": DEFAULTS["name"], **copy.deepcopy(dict(config))}, Path(".")
    raise ConfigError("config", "must be a path to an experiment file, a mapping, or None", type(config).__name__)


def _parts(train: Any, val: Any, test: Any) -> tuple[dict[str, tuple[np.ndarray, np.ndarray] | None], str]:
    """The arrays of each part given, and their digest (what the study's data section stands for)."""
    parts = {name: None if obj is None else _arrays(obj, name) for name, obj in
             (("train", train), ("val", val), ("test", test))}
    digest = hashlib.sha256()
    for part in parts.values():
        if part is not None:
            digest.update(part[0].tobytes())
            digest.update(part[1].astype(str).tobytes())
    shapes = {part[0].shape[1:] for part in parts.values() if part is not None}
    if len(shapes) > 1:
        raise ConfigError("val", f"train, val and test must have one sample shape; they have {sorted(shapes)}")
    return parts, digest.hexdigest()[:16]


def _arrays(data: Any, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as arrays, from a pair of arrays or tensors, a Dataset of pairs, or a DataLoader of batches."""
    from squeezer.search.data.images import _features

    if isinstance(data, tuple) and len(data) == 2:
        x, y = (np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for v in data)
    elif isinstance(data, torch.utils.data.DataLoader):
        batches = [(np.asarray(b[0]), np.asarray(b[1])) for b in data]
        if not batches:
            raise ConfigError(key, "the DataLoader yields no batches")
        x, y = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    elif isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        pairs = [data[i] for i in range(len(data))]
        if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs[:1]):
            raise ConfigError(key, "a Dataset must yield (x, y) pairs", type(pairs[0]).__name__ if pairs else "empty")
        x = np.stack([np.asarray(p[0]) for p in pairs])
        y = np.asarray([p[1].item() if isinstance(p[1], torch.Tensor) else p[1] for p in pairs])
    else:
        raise ConfigError(key, "must be (x, y) arrays or tensors, a torch Dataset of (x, y), or a DataLoader",
                          type(data).__name__)
    if y.ndim != 1 or len(y) != len(x):
        raise ConfigError(key, "y must be one label per sample of x", f"x{x.shape}, y{y.shape}")
    return _features(x, key, Path(key)), y


def _is_causal(model: Any) -> bool:
    """A transformers causal language model: a module with a config and ``generate`` (``...ForCausalLM``)."""
    return isinstance(model, nn.Module) and hasattr(model, "generate") and hasattr(model, "config") \
        and type(model).__name__.endswith("ForCausalLM")


def _tokenizer(tokenizer: Any) -> Any:
    """A tokenizer object as given, or the one saved in a folder."""
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        if not Path(tokenizer).is_dir():
            raise ConfigError("tokenizer", "must be a tokenizer or the folder it was saved to", str(tokenizer))
        return AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
    if not callable(tokenizer) or not hasattr(tokenizer, "decode"):
        raise ConfigError("tokenizer", "must be a transformers tokenizer or the folder it was saved to",
                          type(tokenizer).__name__)
    return tokenizer


def _digest_module(model: nn.Module) -> str:
    from squeezer.search.trial.teacher import weights_digest

    return f"{type(model).__qualname__}:{weights_digest(model)}"


__all__ = ["Member", "Result", "compress"]
