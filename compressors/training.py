"""The training loop and accuracy shared by every compressor that trains (distillation, fine-tuning)."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from squeezer.compressors.base import TrialContext

#: ``loss(student_logits, labels, teacher_logits_or_None) -> scalar``
LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class DivergedError(RuntimeError):
    """Training produced a non-finite loss."""


def fit(model: nn.Module, ctx: TrialContext, loss_fn: LossFn, *, epochs: int, lr: float,
        stage: str, weight_decay: float = 0.0) -> nn.Module:
    """Train ``model`` in place with Adam over ``ctx``'s training split; report loss and val accuracy per epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = ctx.generator(salt=sum(map(ord, stage)))
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for idx in torch.randperm(len(ctx.train_x), generator=generator).split(ctx.batch_size):
            teacher = None if ctx.teacher_logits is None else ctx.teacher_logits[idx]
            loss = loss_fn(model(ctx.train_x[idx]), ctx.train_y[idx], teacher)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        if not math.isfinite(total):
            raise DivergedError(f"{stage}: training loss became {total / count} in epoch {epoch + 1}; try a lower lr")
        ctx.report(epoch, {f"{stage}.loss": total / count,
                           f"{stage}.val_accuracy": accuracy(model, ctx.val_x, ctx.val_y)})
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, batched."""
    model.eval()
    return torch.cat([model(chunk).float() for chunk in x.split(batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    return (predict(model, x).argmax(1) == y).float().mean().item()
