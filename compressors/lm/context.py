"""What a causal-LM compressor may use: token blocks, the teacher, its cached outputs, the device, a progress hook."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from squeezer.compressors.base import Report
from squeezer.compressors.device import Device
from squeezer.compressors.lm.losses import BETAS, next_token_loss, rest_statistics


@dataclass(frozen=True)
class TopK:
    """The teacher's k largest next-token logits at every position of the training blocks and their token ids
    (``[N, T, k]`` each), and what its probability outside them needs at any temperature (``rest`` and
    ``rest_mean``, ``[N, T, len(BETAS)]``: ``losses.rest_statistics``); memory-mapped from the study's cache."""

    values: torch.Tensor
    indices: torch.Tensor
    rest: torch.Tensor | None = None
    rest_mean: torch.Tensor | None = None

    @classmethod
    def of(cls, logits: torch.Tensor, k: int, positions: int = 512) -> "TopK":
        """The cached form of a teacher's ``logits [..., V]``: top-k logits (float16), ids (int32), the rest's
        statistics (float32) — computed ``positions`` at a time, so that their temporaries stay a few times one
        chunk of logits whatever the batch."""
        flat = logits.reshape(-1, logits.shape[-1])
        parts = []
        for i in range(0, len(flat), positions):
            chunk = flat[i:i + positions].float()
            top = chunk.topk(k, dim=-1)
            parts.append((top.values.half(), top.indices.int(), *rest_statistics(chunk, top.indices)))
        values, indices, lse, mean = (torch.cat([p[j] for p in parts]).reshape(*logits.shape[:-1], -1)
                                      for j in range(4))
        return cls(values, indices, lse, mean)

    @classmethod
    def empty(cls, shape: tuple[int, ...], k: int) -> "TopK":
        """Room for the cached form of ``shape`` (``[N, T]``) positions, filled block by block with ``put``."""
        return cls(torch.empty(*shape, k, dtype=torch.float16), torch.empty(*shape, k, dtype=torch.int32),
                   torch.empty(*shape, len(BETAS)), torch.empty(*shape, len(BETAS)))

    def put(self, rows: slice, part: "TopK") -> None:
        """``part``'s cached outputs into ``rows`` (copied to this one's device)."""
        for mine, theirs in ((self.values, part.values), (self.indices, part.indices), (self.rest, part.rest),
                             (self.rest_mean, part.rest_mean)):
            mine[rows] = theirs.to(mine.device)

    def rows(self, idx: torch.Tensor) -> "TopK":
        return TopK(self.values[idx], self.indices[idx], None if self.rest is None else self.rest[idx],
                    None if self.rest_mean is None else self.rest_mean[idx])



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
    prompt_tokens: int = 16  # plain text's stand-in prompt (sequence-level, on-policy): a block's first tokens
    pad_id: int = 0
    seed: int = 0
    batch_size: int = 16
    report: Report = field(default=lambda step, metrics: None)
    device: Device = field(default_factory=Device)

    def generator(self, salt: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)


def prompt_lengths(ids: torch.Tensor, mask: torch.Tensor | None, default: int) -> torch.Tensor:
    """Where each row's prompt ends ``[B]``: before its first counted token (``mask``: prompt/response pairs, whose
    prompt is the prompt), else after ``default`` tokens (plain text has no prompt: a block's start stands for one)."""
    if mask is None:
        return torch.full((len(ids),), default, dtype=torch.long)
    counted = mask.any(-1)
    return torch.where(counted, mask.int().argmax(-1), torch.full_like(counted, default, dtype=torch.long))


@torch.no_grad()
def continue_prompts(model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor, new_tokens: Callable[[int], int],
                     pad_id: int, **sampling: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``model``'s continuations of each row's prompt (``ids[i, :lengths[i]]``; ``new_tokens(length)`` tokens
    after it), prompts of one length generated as one batch; rows right-padded with ``pad_id`` to one length (harmless
    to a causal model), and the mask of the generated positions."""
    rows: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    for length in lengths.unique().tolist():
        chosen = (lengths == length).nonzero().flatten()
        n = new_tokens(length)
        out = model.generate(ids[chosen, :length], max_new_tokens=n, min_new_tokens=n, pad_token_id=pad_id,
                             **sampling)
        for i, row in zip(chosen.tolist(), out, strict=True):
            rows[i] = row
    width = max(len(r) for r in rows)
    out = torch.full((len(ids), width), pad_id, dtype=ids.dtype, device=ids.device)
    mask = torch.zeros(len(ids), width, dtype=torch.bool, device=ids.device)
    for i, (row, length) in enumerate(zip(rows, lengths.tolist(), strict=True)):
        out[i, :len(row)] = row
        mask[i, length:len(row)] = True
    return out, mask


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None, batch: int = 16,
               device: Device | None = None) -> float:
    """exp of the mean next-token cross-entropy of ``model`` on blocks ``ids`` (the tokens ``mask`` keeps)."""
    device = device or Device()
    was_training = model.training
    model.eval()
    try:
        return perplexity_of(lambda x: model(input_ids=x).logits, ids, mask, batch, device.put)
    finally:
        model.train(was_training)


def perplexity_of(logits_of: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor,
                  mask: torch.Tensor | None = None, batch: int = 16,
                  put: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> float:
    """exp of the mean next-token cross-entropy of the logits ``logits_of`` gives for blocks of ``ids`` (the tokens
    ``mask`` keeps), ``batch`` blocks at a time, each moved by ``put`` where the logits are computed."""
    total, count = 0.0, 0.0
    for start in range(0, len(ids), batch):
        x = put(ids[start:start + batch])
        m = None if mask is None else put(mask[start:start + batch])
        weight = float(x[:, 1:].numel() if m is None else m[:, 1:].sum())
        if weight == 0:
            continue
        total += float(next_token_loss(logits_of(x), x, m)) * weight
        count += weight
    return math.exp(total / count) if count else float("nan")


__all__ = ["LmContext", "Sequences", "TopK", "continue_prompts", "perplexity", "perplexity_of", "prompt_lengths"]
