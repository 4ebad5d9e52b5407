"""Runtimes a compressed student is deployed in and measured: ``onnxruntime`` (exported to ONNX, quantized with
ONNX Runtime's tools; the default) or ``torch`` (eager PyTorch, torch.ao quantization). Each turns a compressed model
into a ``Deployed``: a callable on input batches, with the artifact's path."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from squeezer.search.data.preprocess import InputSpec

@dataclass(frozen=True)
class Runtime:
    """What a runtime is: the module that deploys into it (imported when used), the file it deploys, and the
    quantizations it runs (config validation reads them)."""

    title: str  # in messages
    module: str
    artifact: str
    bits: tuple[int, ...]
    halves: tuple[str, ...]  # the 16-bit float formats


#: Runtimes by name: the one list of allowed ``measure.runtime`` values.
RUNTIMES = {"onnxruntime": Runtime("ONNX Runtime on CPU", "squeezer.search.runtime.ort", "model.onnx",
                                   (32, 16, 8, 4, 2), ("fp16",)),
            "torch": Runtime("the torch runtime", "squeezer.search.runtime.eager", "model.pt", (32, 16, 8),
                             ("fp16", "bf16"))}
ARTIFACTS = {name: runtime.artifact for name, runtime in RUNTIMES.items()}  # the file each deploys, in a trial's folder


class Deployed(Protocol):
    path: Path  # the saved artifact: its bytes are the model's size

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def predict(self, x: torch.Tensor) -> torch.Tensor: ...


def deploy(model: nn.Module, runtime: str, workdir: Path, example: torch.Tensor, threads: int = 1,
           spec: InputSpec | None = None) -> Deployed:
    """Write ``model`` as ``runtime`` deploys it under ``workdir`` (model.onnx or model.pt) and load it there.
    ``example``: an input as the model sees it; with ``spec``, the deployed model takes the raw input (its
    preprocessing is part of the artifact)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"measure.runtime: must be one of {list(RUNTIMES)}, but got {runtime!r}")
    module = importlib.import_module(RUNTIMES[runtime].module)
    return module.deploy(model, workdir / RUNTIMES[runtime].artifact, example, threads, spec)


__all__ = ["ARTIFACTS", "Deployed", "RUNTIMES", "Runtime", "deploy"]
