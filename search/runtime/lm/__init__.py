"""Where a causal language model is deployed and measured, by name (``measure.runtime`` of a language-model study):

- ``onnxruntime-genai`` (the default): ONNX Runtime GenAI's model builder turns the student into the ONNX model,
  ``genai_config.json`` and tokenizer that its generator runs — fp32, int8 or int4 weights (``MatMulNBits``, one
  scale per ``group_size`` block), bf16 on a CUDA GPU — the way small language models ship;
- ``torch``: the ``save_pretrained`` folder, loaded and run by transformers in eager PyTorch (bf16, or int8 / int4
  weight-only linear layers).

A step's ``lm_quantize`` says the precision (``Precision``, carried on the model's config); the runtime realises it
when it deploys. Each runtime gives a ``DeployedLm``: its folder, its bytes, its logits on token blocks (perplexity is
measured on the deployed model, its quantization error included) and its generation timed with the KV cache."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from squeezer.compressors.lm.quantize import Precision

HF_FOLDER = "model"  # the save_pretrained folder in a trial's workdir (and its MLflow run's artifacts)


@dataclass(frozen=True)
class LmRuntime:
    """A language model's runtime: the module that deploys into it (imported when used), the folder it deploys in
    a trial's workdir, the bits it runs on the CPU and on a GPU, and what it needs to run on a GPU."""

    title: str
    module: str
    folder: str
    bits: tuple[int, ...]
    gpu_bits: tuple[int, ...]
    gpu_package: str
    group_sizes: tuple[int, ...] | None = None  # the block sizes its int8 / int4 weights take (None: any >= 8)

    def on_gpu(self) -> bool:
        return bool(importlib.import_module(self.module).runs_on_gpu())


GENAI = "onnxruntime-genai"
#: Language-model runtimes by name: the one list of allowed ``measure.runtime`` values of a language-model study.
LM_RUNTIMES = {
    GENAI: LmRuntime("ONNX Runtime GenAI", "squeezer.search.runtime.lm.genai", "onnxruntime-genai", (32, 8, 4),
                     (32, 16, 8, 4), "onnxruntime-genai-cuda", (16, 32, 64, 128, 256)),
    "torch": LmRuntime("the torch runtime", "squeezer.search.runtime.lm.eager", HF_FOLDER, (32, 16, 8, 4),
                       (32, 16, 8, 4), "a CUDA build of torch"),
}
DEFAULT_LM_RUNTIME = GENAI


class DeployedLm(Protocol):
    """A language model as its runtime runs it."""

    folder: Path  # what users take away

    def size_bytes(self) -> int: ...

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[B, T, V]`` (float32, on the CPU) of token blocks ``ids [B, T]``."""

    def generate(self, prompts: torch.Tensor, new_tokens: int) -> tuple[float, float]:
        """Greedy generation of ``new_tokens`` after ``prompts [B, P]`` with the KV cache: milliseconds to the first
        token (the prefill), and per further token."""


def _module(runtime: str) -> Any:
    if runtime not in LM_RUNTIMES:
        raise ValueError(f"measure.runtime: must be one of {list(LM_RUNTIMES)} for a language model, but got "
                         f"{runtime!r}")
    return importlib.import_module(LM_RUNTIMES[runtime].module)


def deploy(model: nn.Module, tokenizer: Any, runtime: str, workdir: Path, threads: int = 1, device: str = "cpu",
           summary: str = "") -> DeployedLm:
    """``model`` at its ``Precision`` deployed in ``runtime`` under ``workdir`` (the save_pretrained folder
    ``model/``, and the runtime's own folder), loaded from there."""
    return _module(runtime).deploy(model, tokenizer, workdir, threads, device, summary)


def load(runtime: str, workdir: Path, threads: int = 1, device: str = "cpu") -> DeployedLm:
    """The model ``deploy`` wrote under ``workdir``, loaded again."""
    return _module(runtime).load(workdir / LM_RUNTIMES[runtime].folder, threads, device)


__all__ = ["DEFAULT_LM_RUNTIME", "DeployedLm", "GENAI", "HF_FOLDER", "LM_RUNTIMES", "LmRuntime", "Precision",
           "deploy", "load"]
