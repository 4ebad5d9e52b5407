"""Pruning: structured (whole neurons and channels removed, with the layers that depend on them; or a transformer's
attention heads and FFN units: the model really shrinks) or unstructured (single weights zeroed; the runtimes store
such a weight as a bitmap plus its survivors). Importance by magnitude or by a first-order Taylor score, ranked per
layer or globally, in one step or several with fine-tuning between them."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from squeezer.compressors.base import Compressor, CompressorConfig, TrialContext, check
from squeezer.compressors.registry import register
from squeezer.compressors.training import finetune
from squeezer.compressors.transformer_prune import drop_layers, encoder_layers, is_transformer, prune_heads_and_ffn

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)
IMPORTANCE = ("magnitude", "taylor")
SCOPES = ("layer", "global")
TAYLOR_SAMPLES = 512  # training samples whose loss gradient scores the weights


@dataclass(frozen=True)
class PruneConfig(CompressorConfig):
    ratio: float = 0.3           # fraction of neurons/channels (structured) or of weights (unstructured) removed
    structured: bool = True
    importance: str = "magnitude"  # magnitude (L1) or taylor (|weight x gradient| of the loss)
    scope: str = "layer"         # layer: every layer loses `ratio`; global: one ranking across layers
    steps: int = 1               # prune in this many steps, fine-tuning after each
    finetune_epochs: int = 0     # per step
    lr: float = 5e-4
    keep_layers: int | None = None  # a transformer encoder: keep this many of its layers (every k-th), first

    def validate(self) -> None:
        check(0 <= self.ratio < 1, "ratio", "must be in [0, 1)", self.ratio)
        check(self.keep_layers is None or (isinstance(self.keep_layers, int) and not isinstance(self.keep_layers, bool)
                                           and self.keep_layers >= 1), "keep_layers",
              "must be an integer >= 1 (the encoder layers kept), or null", self.keep_layers)
        check(isinstance(self.structured, bool), "structured", "must be true or false", self.structured)
        check(self.importance in IMPORTANCE, "importance", f"must be one of {list(IMPORTANCE)}", self.importance)
        check(self.scope in SCOPES, "scope", f"must be one of {list(SCOPES)}", self.scope)
        check(isinstance(self.steps, int) and 1 <= self.steps <= 100, "steps", "must be an integer in [1, 100]",
              self.steps)
        check(isinstance(self.finetune_epochs, int) and self.finetune_epochs >= 0, "finetune_epochs",
              "must be an integer >= 0", self.finetune_epochs)
        check(self.lr > 0, "lr", "must be > 0", self.lr)


@register
class Prune(Compressor):
    """Remove the least important structures or weights in ``steps`` steps, each followed by fine-tuning on the
    hard labels."""

    name = "prune"
    searched = {"ratio": {"float": [0.0, 0.6]}, "finetune_epochs": 1}
    Config = PruneConfig
    config: PruneConfig
    training_fields = ("finetune_epochs",)

    def label(self) -> str:
        kind = "" if self.config.structured else " unstructured"
        return f"prune {100 * self.config.ratio:.0f} %{kind}" if self.config.ratio > 0 else ""

    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        model = copy.deepcopy(model).eval().to(ctx.device.where)
        cfg = self.config
        if cfg.keep_layers is not None:
            model = drop_layers(model, cfg.keep_layers)
        if cfg.ratio == 0:
            return self._finetune(model, ctx)
        for step in range(1, cfg.steps + 1):
            # the fraction still to remove of what is left, so that the steps compound to `ratio`
            done, target = _schedule(cfg.ratio, step - 1, cfg.steps), _schedule(cfg.ratio, step, cfg.steps)
            model = self._prune(model, ctx, 1 - (1 - target) / (1 - done))
            model = self._finetune(model, ctx)
        return remove_masks(model)

    def check_models(self, student: nn.Module, teachers: Sequence[nn.Module], example: torch.Tensor) -> None:
        layers = len(encoder_layers(student))
        check(self.config.keep_layers is None or 0 < self.config.keep_layers <= layers, "keep_layers",
              f"must be at most the student's {layers} encoder layers" if layers else
              "drops a transformer encoder's layers; this student has none", self.config.keep_layers)
        check(self.config.ratio == 0 or any(isinstance(m, PRUNABLE) for m in student.modules()), "ratio",
              "needs a student with Linear or Conv layers to prune; this one has none (a torch.export program calls "
              "operators, not layers: give the teacher as model: with your factory to prune it)", self.config.ratio)

    def _prune(self, model: nn.Module, ctx: TrialContext, ratio: float) -> nn.Module:
        cfg = self.config
        scores = taylor_scores(model, ctx) if cfg.importance == "taylor" else None
        try:
            if cfg.structured and is_transformer(model):
                return prune_heads_and_ffn(model, ratio, scores=scores, scope=cfg.scope)
            if cfg.structured:
                return prune_structured(model, ratio, ctx.rows(torch.arange(1)), scores=scores, scope=cfg.scope)
            # the masks hold pruned weights at zero through fine-tuning; `apply` bakes them in at the end
            return mask_unstructured(model, ratio, scores=scores, scope=cfg.scope)
        finally:
            model.zero_grad(set_to_none=True)

    def _finetune(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        return finetune(model, ctx, self.config.finetune_epochs, self.config.lr, stage=self.name)


def _schedule(ratio: float, step: int, steps: int) -> float:
    """The cumulative fraction removed after ``step`` of ``steps`` (geometric: each step removes the same share of
    what is left)."""
    return 1 - (1 - ratio) ** (step / steps)


Scores = dict[nn.Parameter, torch.Tensor]


def taylor_scores(model: nn.Module, ctx: TrialContext) -> Scores:
    """|weight x d loss / d weight| for every parameter, from the loss on ``TAYLOR_SAMPLES`` training samples
    (distillation loss against the teacher's cached logits when there is one, else cross-entropy). The gradients
    stay on the parameters until the pruning step has read them."""
    model.zero_grad(set_to_none=True)
    idx = torch.randperm(len(ctx.train_x), generator=ctx.generator(salt=7))[:TAYLOR_SAMPLES]
    logits = model.train()(ctx.rows(idx))
    if ctx.teachers is not None:
        target = F.softmax(ctx.device.put(ctx.teachers.logits()[idx]), 1)
        loss = F.cross_entropy(logits, target)
    else:
        loss = F.cross_entropy(logits, ctx.labels(idx))
    loss.backward()
    model.eval()
    return {p: (p.detach() * p.grad).abs() for p in model.parameters() if p.grad is not None}


def prune_structured(model: nn.Module, ratio: float, example_input: torch.Tensor, scores: Scores | None = None,
                     scope: str = "layer") -> nn.Module:
    """Remove ``ratio`` of the hidden neurons/channels (lowest L1 norm, or lowest summed Taylor ``scores``) in place,
    per layer or ranked globally.

    Torch-Pruning traces the dependency graph, so coupled layers (BatchNorm, the next layer's inputs) shrink too;
    the classifier's outputs are kept.
    """
    import torch_pruning as tp

    classifier = [m for m in model.modules() if isinstance(m, PRUNABLE)][-1:]
    # Torch-Pruning's Taylor importance reads the gradients ``taylor_scores`` left on the weights
    importance = tp.importance.MagnitudeImportance(p=1) if scores is None else tp.importance.TaylorImportance()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.BasePruner(model, example_input, importance=importance, pruning_ratio=ratio,
                                      ignored_layers=classifier, global_pruning=scope == "global")
        pruner.step()
    return model


def mask_unstructured(model: nn.Module, ratio: float, scores: Scores | None = None, scope: str = "global") \
        -> nn.Module:
    """Zero ``ratio`` of the prunable weights (lowest magnitude, or lowest Taylor ``scores``), ranked across all
    layers or within each, in place (pruning masks; see ``remove_masks``)."""
    layers = [m for m in model.modules() if isinstance(m, PRUNABLE)]

    def score_of(m: nn.Module) -> torch.Tensor | None:
        if scores is None:
            return None
        weight: torch.Tensor = m.weight_orig if hasattr(m, "weight_orig") else m.weight  # type: ignore[assignment]
        return scores.get(weight, weight.detach().abs())  # type: ignore[call-overload]
    if scope == "global":
        importance = None if scores is None else {(m, "weight"): score_of(m) for m in layers}
        torch_prune.global_unstructured([(m, "weight") for m in layers], pruning_method=torch_prune.L1Unstructured,
                                        importance_scores=importance, amount=ratio)
    else:
        for m in layers:
            torch_prune.l1_unstructured(m, "weight", amount=ratio, importance_scores=score_of(m))
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Make pruning masks permanent (otherwise the state dict holds both the weights and the masks)."""
    for module in model.modules():
        if torch_prune.is_pruned(module) and hasattr(module, "weight_mask"):
            torch_prune.remove(module, "weight")
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of zero weights across the prunable layers."""
    weights = [m.weight for m in model.modules() if isinstance(m, PRUNABLE)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(1, sum(w.numel() for w in weights))
