"""The training loop and accuracy shared by every compressor that trains (distillation, fine-tuning)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from squeezer.compressors.base import TrialContext, check
from squeezer.compressors.device import device_of

#: ``loss(indices) -> scalar``: the training loss on the batch of training samples at ``indices``.
BatchLoss = Callable[[torch.Tensor], torch.Tensor]
#: ``hook(epoch) -> metrics``: called around each epoch; what it returns is reported with the epoch's metrics.
EpochHook = Callable[[int], Mapping[str, float]]
LR_SCHEDULES = ("constant", "cosine")


class DivergedError(RuntimeError):
    """Training produced a non-finite loss."""


@dataclass(frozen=True)
class Optim:
    """How to train: Adam at ``lr`` with linear warm-up over ``warmup_epochs`` and then a constant or cosine-decayed
    rate; ``accumulate`` batches per optimizer step (gradient accumulation, for small batches); ``patience``: stop
    once validation accuracy has not improved for that many epochs, keeping the best epoch's weights (0: never)."""

    epochs: int
    lr: float
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    lr_schedule: str = "constant"
    accumulate: int = 1
    patience: int = 0

    def validate(self) -> None:
        check(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "must be an integer >= 1", self.epochs)
        check(self.lr > 0, "lr", "must be > 0", self.lr)
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0", self.weight_decay)
        check(isinstance(self.warmup_epochs, int) and 0 <= self.warmup_epochs < self.epochs, "warmup_epochs",
              "must be an integer in [0, epochs)", self.warmup_epochs)
        check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"must be one of {list(LR_SCHEDULES)}",
              self.lr_schedule)
        check(isinstance(self.accumulate, int) and self.accumulate >= 1, "accumulate", "must be an integer >= 1",
              self.accumulate)
        check(isinstance(self.patience, int) and not isinstance(self.patience, bool) and self.patience >= 0,
              "patience", "must be an integer >= 0", self.patience)

    def factor(self, step: int, steps_per_epoch: int) -> float:
        """The learning-rate multiplier at optimizer ``step``."""
        warmup, total = self.warmup_epochs * steps_per_epoch, self.epochs * steps_per_epoch
        if step < warmup:
            return (step + 1) / warmup
        if self.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        return 1.0


def fit(model: nn.Module, ctx: TrialContext, loss_fn: BatchLoss, optim: Optim, *, stage: str,
        extra: Iterable[nn.Parameter] = (), indices: torch.Tensor | None = None,
        before_epoch: EpochHook | None = None, after_epoch: EpochHook | None = None,
        after_step: Callable[[], None] | None = None) -> nn.Module:
    """Train ``model`` (and the ``extra`` parameters, which must be on ``ctx.device`` already: the caller's own
    modules) in place over ``ctx``'s training split, or its ``indices``, on ``ctx.device`` (where the model is moved,
    and stays) in its precision.

    Reports each epoch's mean loss, validation accuracy and learning rate, plus what the hooks return.
    """
    device = ctx.device
    model.to(device.where)
    params = [*model.parameters(), *extra]
    optimizer = torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    scaler = device.scaler()
    indices = torch.arange(len(ctx.train_x)) if indices is None else indices
    batches = math.ceil(len(indices) / ctx.batch_size)
    steps_per_epoch = math.ceil(batches / optim.accumulate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: optim.factor(step, steps_per_epoch))
    generator = ctx.generator(salt=sum(map(ord, stage)))
    plateau = Plateau(optim.patience, higher_is_better=True)
    for epoch in range(optim.epochs):
        extra_metrics = dict(before_epoch(epoch)) if before_epoch else {}
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        total, count = torch.zeros((), dtype=torch.float64, device=device.where), 0  # on the device: no sync per batch
        for i, idx in enumerate(indices[torch.randperm(len(indices), generator=generator)].split(ctx.batch_size)):
            with device.autocast():
                loss = loss_fn(idx)
            scaler.scale(loss.float() / optim.accumulate).backward()
            if (i + 1) % optim.accumulate == 0 or i + 1 == batches:
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if after_step:
                    after_step()
            total, count = total + loss.detach().double() * len(idx), count + len(idx)
        mean = total.item() / count
        if not math.isfinite(mean):
            raise DivergedError(f"{stage}: training loss became {mean} in epoch {epoch + 1}; try a lower lr")
        extra_metrics.update(after_epoch(epoch) if after_epoch else {})
        val = accuracy(model, ctx.val_x, ctx.val_y)
        ctx.report(epoch, {f"{stage}.loss": mean, f"{stage}.lr": lr, f"{stage}.val_accuracy": val, **extra_metrics})
        if plateau.stops(model, val):
            break
    return plateau.best(model).eval()


class Plateau:
    """Early stopping on a validation metric: ``stops`` once it has not improved for ``patience`` evaluations in a
    row (never where ``patience`` is 0); ``best`` puts back the weights of the best evaluation."""

    def __init__(self, patience: int, higher_is_better: bool) -> None:
        self.patience, self.sign = patience, 1.0 if higher_is_better else -1.0
        self.top, self.since, self.state = -math.inf, 0, None

    def stops(self, model: nn.Module, value: float) -> bool:
        if not self.patience:
            return False
        if math.isfinite(value) and self.sign * value > self.top:
            self.top, self.since = self.sign * value, 0
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        self.since += 1
        return self.since >= self.patience

    def best(self, model: nn.Module) -> nn.Module:
        if self.state is not None:
            model.load_state_dict(self.state)
        return model


def finetune(model: nn.Module, ctx: TrialContext, epochs: int, lr: float, *, stage: str) -> nn.Module:
    """``epochs`` of training on the hard labels (none: ``model`` as it is), after a step that cut weights away."""
    if epochs == 0:
        return model
    return fit(model, ctx, hard_labels(model, ctx), Optim(epochs, lr), stage=stage)


def hard_labels(model: nn.Module, ctx: TrialContext) -> BatchLoss:
    """The plain supervised loss: cross-entropy of ``model`` with the labels of the batch."""
    return lambda idx: F.cross_entropy(model(ctx.inputs(idx)), ctx.labels(idx))


#: Values (samples x values per sample) in one inference batch: large images go in smaller batches, so that their
#: activations stay bounded.
BATCH_VALUES = 1 << 20


def inference_batch(x: torch.Tensor, most: int = 1024, values: int = BATCH_VALUES) -> int:
    """How many samples of ``x`` to run at once for inference: at most ``most``, and about ``values`` values."""
    return max(1, min(most, values // max(1, x[0].numel() if len(x) else 1)))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int | None = None,
            step: Callable[[int], Any] | None = None) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, batched (``step(rows)`` after each batch), run where the model is
    and returned where ``x`` is. Token rows of a model with a ``pad_id`` go in order of length, so each batch carries
    little padding (the logits come back in the original order)."""
    model.eval()
    where = device_of(model)
    batch_size = batch_size or inference_batch(x)
    pad_id = getattr(model, "pad_id", None)
    order = None if pad_id is None or x.is_floating_point() else by_length(x, pad_id)
    logits = []
    for chunk in (x if order is None else x[order]).split(batch_size):
        logits.append(model(chunk.to(where, non_blocking=True)).float().to(x.device))
        if step is not None:
            step(len(chunk))
    out = torch.cat(logits)
    return out if order is None else out[order.argsort()]


def by_length(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Row indices of token ids from the shortest text to the longest: batches of similar lengths carry little
    padding."""
    return (ids != pad_id).sum(1).argsort()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    return (predict(model, x).argmax(1) == y.to(x.device)).float().mean().item()
