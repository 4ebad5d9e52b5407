"""The torch runtime for language models: the ``save_pretrained`` folder (``hf``) loaded by transformers and run in
eager PyTorch — bf16 weights and compute, or int8 / int4 weight-only linear layers (``weight_only``)."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from squeezer.compressors.lm import weight_only
from squeezer.compressors.lm.quantize import Precision
from squeezer.search.runtime.lm import HF_FOLDER
from squeezer.search.runtime.lm import hf


def runs_on_gpu() -> bool:
    return torch.cuda.is_available()


class TorchLm:
    """A save_pretrained folder loaded by transformers, on ``device``."""

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        self.folder, self.device = folder, torch.device(device)
        self.model = hf.load(folder).to(self.device)

    def size_bytes(self) -> int:
        return hf.weights_bytes(self.folder)

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids.to(self.device)).logits.float().cpu()

    @torch.inference_mode()
    def generate(self, prompts: torch.Tensor, new_tokens: int) -> tuple[float, float]:
        model, prompts = self.model, prompts.to(self.device)
        start = time.perf_counter()
        out = model(input_ids=prompts, use_cache=True, logits_to_keep=1)  # the prefill: the last position's logits
        token = out.logits[:, -1:].argmax(-1)
        token.cpu()
        first = time.perf_counter()
        cache = out.cache
        for _ in range(new_tokens - 1):
            out = model(input_ids=token, cache=cache, use_cache=True)
            cache, token = out.cache, out.logits[:, -1:].argmax(-1)
        token.cpu()
        end = time.perf_counter()
        return (first - start) * 1e3, (end - first) * 1e3 / max(1, new_tokens - 1)


def realise(model: nn.Module) -> nn.Module:
    """``model`` at its ``Precision``: bf16 weights, int8 / int4 weight-only linear layers, or as it is."""
    precision = Precision.of(model)
    if precision.bits == 16:
        return copy.deepcopy(model).to(torch.bfloat16)
    if precision.bits in (8, 4):
        return weight_only.quantize(copy.deepcopy(model), precision.bits, precision.group_size)
    return model


def deploy(model: nn.Module, tokenizer: Any, workdir: Path, threads: int = 1, device: str = "cpu",
           summary: str = "") -> TorchLm:
    folder = hf.save(realise(model), tokenizer, workdir / HF_FOLDER, summary=summary)
    return TorchLm(folder, device)


def load(folder: Path, threads: int = 1, device: str = "cpu") -> TorchLm:
    return TorchLm(folder, device)


__all__ = ["TorchLm", "deploy", "load", "realise", "runs_on_gpu"]
