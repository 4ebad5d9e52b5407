"""What a causal-LM compressor may use: token blocks, the teacher, its cached outputs, the device, a progress hook."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from squeezer.compressors.base import Report
from squeezer.compressors.device import Device
from squeezer.compressors.lm.losses import next_token_loss


@dataclass(frozen=True)
class TopK:
    """The teacher's k largest next-token logits at every position of the training blocks, their token ids
    (``[N, T, k]`` each), and its probability outside them (``rest``, ``[N, T]``; memory-mapped from the study's
    cache)."""

    values: torch.Tensor
    indices: torch.Tensor
    rest: torch.Tensor | None = None


@dataclass(frozen=True)
class Sequences:
    """The teacher's own continuations of training prompts (sequence-level distillation): token ids ``[M, T]``, the
    generated positions (``mask``), and the teacher's top-k on them."""

    ids: torch.Tensor
    mask: torch.Tensor
    top_k: TopK


@dataclass
class LmContext:
    """Token blocks ``[N, T]`` (``*_mask``: the tokens whose prediction counts; None: all), the teacher in eval mode
    on ``device``, its top-k outputs on ``train`` (None: run it live), and where its continuations come from."""

    train: torch.Tensor
    val: torch.Tensor
    train_mask: torch.Tensor | None = None
    val_mask: torch.Tensor | None = None
    teacher: nn.Module | None = None
    top_k: TopK | None = None
    sequences: Callable[[], Sequences] | None = None  # made (and cached) the first time a trial asks
    prompt_tokens: int = 16  # the prompt a continuation starts from (sequence-level, on-policy)
    pad_id: int = 0
    seed: int = 0
    batch_size: int = 16
    report: Report = field(default=lambda step, metrics: None)
    device: Device = field(default_factory=Device)

    def generator(self, salt: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None, batch: int = 16,
               device: Device | None = None) -> float:
    """exp of the mean next-token cross-entropy of ``model`` on blocks ``ids`` (the tokens ``mask`` keeps)."""
    device = device or Device()
    was_training = model.training
    model.eval()
    total, count = 0.0, 0.0
    for start in range(0, len(ids), batch):
        x = device.put(ids[start:start + batch])
        m = None if mask is None else device.put(mask[start:start + batch])
        weight = float(x[:, 1:].numel() if m is None else m[:, 1:].sum())
        if weight == 0:
            continue
        logits = model(input_ids=x).logits
        total += float(next_token_loss(logits, x, m)) * weight
        count += weight
    model.train(was_training)
    return math.exp(total / max(count, 1.0)) if count else float("nan")


__all__ = ["LmContext", "Sequences", "TopK", "perplexity"]
