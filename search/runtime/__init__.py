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

from squeezer.search.data.inputs import InputSpec

@dataclass(frozen=True)
class Runtime:
    """What a runtime is: the module that deploys into it (imported when used), the file it deploys, the
    quantizations it runs on the CPU and on a GPU (config validation reads them), and what it needs to run on a
    GPU (its module's ``runs_on_gpu()`` says whether that is installed)."""

    title: str  # in messages
    module: str
    artifact: str
    bits: tuple[int, ...]
    halves: tuple[str, ...]  # the 16-bit float formats
    gpu_bits: tuple[int, ...]
    gpu_package: str

    def on_gpu(self) -> bool:
        """Whether what is installed runs this runtime on a CUDA GPU."""
        return bool(importlib.import_module(self.module).runs_on_gpu())


#: Runtimes by name: the one list of allowed ``measure.runtime`` values.
RUNTIMES = {"onnxruntime": Runtime("ONNX Runtime", "squeezer.search.runtime.ort", "model.onnx",
                                   (32, 16, 8, 4, 2), ("fp16",), (32, 16, 8, 4, 2), "onnxruntime-gpu"),
            "torch": Runtime("the torch runtime", "squeezer.search.runtime.eager", "model.pt", (32, 16, 8),
                             ("fp16", "bf16"), (32, 16), "a CUDA build of torch")}
ARTIFACTS = {name: runtime.artifact for name, runtime in RUNTIMES.items()}  # the file each deploys, in a trial's folder


class Deployed(Protocol):
    path: Path  # the saved artifact: its bytes are the model's size

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def predict(self, x: torch.Tensor) -> torch.Tensor: ...


def deploy(model: nn.Module, runtime: str, workdir: Path, example: torch.Tensor, threads: int = 1,
           spec: InputSpec | None = None, device: str = "cpu") -> Deployed:
    """Write ``model`` as ``runtime`` deploys it under ``workdir`` (model.onnx or model.pt) and load it there, to
    run on ``device`` (the CPU, or ``cuda``/``cuda:N``). ``example``: an input as the model sees it; with ``spec``,
    the deployed model takes the raw input (its preprocessing is part of the artifact)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"measure.runtime: must be one of {list(RUNTIMES)}, but got {runtime!r}")
    module = importlib.import_module(RUNTIMES[runtime].module)
    return module.deploy(model, workdir / RUNTIMES[runtime].artifact, example, threads, spec, device)


__all__ = ["ARTIFACTS", "Deployed", "RUNTIMES", "Runtime", "deploy"]
