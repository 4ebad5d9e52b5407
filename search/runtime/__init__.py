"""Runtimes a compressed student is deployed in and measured: ``onnxruntime`` (exported to ONNX, quantized with
ONNX Runtime's tools; the default) or ``torch`` (eager PyTorch, torch.ao quantization). Each turns a compressed model
into a ``Deployed``: a callable on input batches, with the artifact's path."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from squeezer.search.data.preprocess import InputSpec

RUNTIMES = ("onnxruntime", "torch")
ARTIFACTS = {"onnxruntime": "model.onnx", "torch": "model.pt"}  # the file each runtime deploys, in the trial's folder


class Deployed(Protocol):
    path: Path  # the saved artifact: its bytes are the model's size

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def predict(self, x: torch.Tensor) -> torch.Tensor: ...


def deploy(model: nn.Module, runtime: str, workdir: Path, example: torch.Tensor, threads: int = 1,
           spec: InputSpec | None = None) -> Deployed:
    """Write ``model`` as ``runtime`` deploys it under ``workdir`` (model.onnx or model.pt) and load it there.
    ``example``: an input as the model sees it; with ``spec``, the deployed model takes the raw input (its
    preprocessing is part of the artifact)."""
    if runtime == "onnxruntime":
        from squeezer.search.runtime import ort

        return ort.deploy(model, workdir / ARTIFACTS[runtime], example, threads, spec)
    if runtime == "torch":
        from squeezer.search.runtime import eager

        return eager.deploy(model, workdir / ARTIFACTS[runtime], spec)
    raise ValueError(f"measure.runtime: must be one of {list(RUNTIMES)}, but got {runtime!r}")


__all__ = ["ARTIFACTS", "Deployed", "RUNTIMES", "deploy"]
