"""The user's own models as families: a factory function in their package or in a Python file (``factory``),
torchvision's constructors (``torchvision``), and a ``torch.export`` program file (``program``). Importing a factory
runs the user's code: Squeezer imports only the module the config names, and only because the user named it.

A factory gets the searched settings as keyword arguments, plus ``num_classes`` and ``input_shape`` when it takes
them; it must return an ``nn.Module`` whose output is one score per class."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch
from torch import nn

from squeezer.compressors.progress import note
from squeezer.search.errors import ConfigError
from squeezer.search.models import zoo
from squeezer.search.models.checks import on_meta

FILE_MODULE = "squeezer_user_"  # a user's file imported as squeezer_user_<hash of its path>


def factory(input_shape: tuple[int, ...], num_classes: int, *, model: str, **kwargs: Any) -> nn.Module:
    """``model``: "package.module:function" or "path/to/file.py:function"; ``kwargs`` go to the function."""
    function = load_function(model, "model")
    accepted = inspect.signature(function).parameters
    takes_all = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    context = {k: v for k, v in (("num_classes", num_classes), ("input_shape", tuple(input_shape)))
               if k in accepted or takes_all}
    unknown = sorted(k for k in kwargs if k not in accepted and not takes_all)
    if unknown:
        raise ConfigError(unknown[0], f"is not a parameter of {model}; its parameters are {list(accepted)}",
                          kwargs[unknown[0]])
    try:
        built = function(**context, **kwargs)
    except Exception as err:  # noqa: BLE001 - the user's code: whatever it raises, name it in one line
        raise ConfigError("model", f"{model} raised {type(err).__name__}: {_first_line(err)}",
                          kwargs or None) from None
    if not isinstance(built, nn.Module):
        raise ConfigError("model", f"{model} must return a torch.nn.Module, not a {type(built).__name__}")
    return built


def torchvision(input_shape: tuple[int, ...], num_classes: int, *, name: str, **kwargs: Any) -> nn.Module:
    """``torchvision.models.get_model(name, num_classes=..., **kwargs)``, untrained (nothing is downloaded; a
    teacher's weights come from ``weights:``). Grayscale images are repeated to the three channels it takes."""
    if kwargs.get("weights") is not None:
        raise ConfigError("weights", "is downloaded by torchvision; give the teacher's state dict as "
                          "`weights: file.pt` instead", kwargs["weights"])
    tv_models = _torchvision_models(name)
    if name not in tv_models.list_models():
        raise ConfigError("name", f"is not a torchvision model; e.g. {sorted(tv_models.list_models())[:8]} ...", name)
    try:
        built = tv_models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError("name", f"torchvision's {name} refused its settings ({_first_line(err)})", kwargs) from None
    if len(input_shape) == 3 and input_shape[0] == 1:
        return nn.Sequential(GrayToRGB(), built)
    return built


def _torchvision_models(name: str) -> Any:
    try:
        vision = zoo.ready()
    except Exception as err:  # noqa: BLE001 - a torchvision that does not import for another reason
        raise ConfigError("name", f"torchvision is installed but does not load ({type(err).__name__}: "
                          f"{_first_line(err)}); install the build that matches torch", name) from None
    if vision is None:
        raise ConfigError("name", "needs torchvision (pip install 'squeezer[vision]', or the torchvision built for "
                          f"your torch {torch.__version__})", name)
    if zoo.operators_missing():
        note(f"squeezer: warning: torchvision's C++ operators do not load beside torch {torch.__version__} (a build "
             "for another torch?): its classification models work, torchvision.ops does not; install the torchvision "
             "built for your torch to silence this")
    return vision.models


def program(input_shape: tuple[int, ...], num_classes: int, *, file: str) -> nn.Module:
    """A ``torch.export`` program (``torch.export.save``, a ``.pt2`` file), read by ``torch.export.load``: its graph
    and weights, no pickled code. Its graph keeps the mode it was exported in (export it in eval mode); it must take
    a batch of any size (``dynamic_shapes`` with a batch ``Dim``)."""
    path = Path(file)
    if not path.is_file():
        raise ConfigError("file", "file not found", str(path))
    meta = on_meta()
    quiet = logging.getLogger("torch.export")  # it logs a failed load's traceback before raising: one line is ours
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    with torch.device("cpu"):  # checked on the meta device like any model, but the file has real weights
        try:
            graph = torch.export.load(str(path)).module()
        except Exception as err:  # noqa: BLE001 - not a program, truncated, or saved by another torch
            raise ConfigError("file", f"is not a torch.export program that loads ({type(err).__name__}: "
                              f"{_first_line(err)}); save one with torch.export.save", str(path)) from None
        finally:
            quiet.setLevel(level)
    built = Program(graph)
    return built.to("meta") if meta else built


class Program(nn.Module):
    """An exported program's graph as a module. ``train()`` and ``eval()`` do not reach the graph, which cannot
    change mode: its BatchNorm and dropout stay as exported (fine-tuning it trains the weights only)."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def train(self, mode: bool = True) -> "Program":
        self.training = mode
        return self


class GrayToRGB(nn.Module):
    """One channel repeated three times: torchvision's models take RGB."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, *x.shape[2:])


def load_function(reference: Any, key: str) -> Callable[..., Any]:
    """The function "package.module:function" or "path/to/file.py:function" names (importing runs that code)."""
    if not isinstance(reference, str) or reference.count(":") != 1 or not all(reference.split(":")):
        raise ConfigError(key, "must be \"package.module:function\" or \"path/to/file.py:function\"", reference)
    where, name = reference.split(":")
    try:
        module = _import(where)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's module: a syntax error, a missing import, ...
        raise ConfigError(key, f"cannot be imported ({type(err).__name__}: {_first_line(err)})", reference) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(key, f"{where} has no callable {name!r}", reference)
    return function


def source_digest(reference: str) -> str:
    """A hash of the file that defines a factory, so that a cache keyed on it notices when the user's code changes."""
    where = reference.split(":")[0]
    path = Path(where) if where.endswith(".py") else None
    if path is None:
        spec = importlib.util.find_spec(where)
        path = Path(spec.origin) if spec is not None and spec.origin else None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path is not None and path.is_file() else ""


def _import(where: str) -> Any:
    if not where.endswith(".py"):
        try:
            return importlib.import_module(where)
        except ModuleNotFoundError as err:
            raise ConfigError("model", f"no module named {err.name!r} (is its package installed, or on "
                              "PYTHONPATH?)", where) from None
    path = Path(where).resolve()
    if not path.is_file():
        raise ConfigError("model", "file not found", str(path))
    name = f"{FILE_MODULE}{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def file_modules() -> list[ModuleType]:
    """The user's Python files imported so far (``model: "file.py:function"``): not importable by name in another
    process, so what they define is pickled by value (Ray's workers)."""
    return [module for name, module in list(sys.modules.items()) if name.startswith(FILE_MODULE)]


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


__all__ = ["GrayToRGB", "Program", "factory", "file_modules", "load_function", "program", "source_digest",
           "torchvision"]
