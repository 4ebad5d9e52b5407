"""Magnitude pruning: structured (whole neurons and channels removed, or a transformer's attention heads and FFN
units; the model really shrinks) or unstructured."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from squeezer.compressors.base import Compressor, CompressorConfig, TrialContext, check
from squeezer.compressors.registry import register
from squeezer.compressors.training import Optim, fit, hard_labels
from squeezer.compressors.transformer_prune import is_transformer, prune_heads_and_ffn

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass(frozen=True)
class PruneConfig(CompressorConfig):
    ratio: float = 0.3           # fraction of neurons/channels (structured) or of weights (unstructured) removed
    structured: bool = True
    finetune_epochs: int = 0
    lr: float = 5e-4

    def validate(self) -> None:
        check(0 <= self.ratio < 1, "ratio", "must be in [0, 1)", self.ratio)
        check(isinstance(self.structured, bool), "structured", "must be true or false", self.structured)
        check(isinstance(self.finetune_epochs, int) and self.finetune_epochs >= 0, "finetune_epochs",
              "must be an integer >= 0", self.finetune_epochs)
        check(self.lr > 0, "lr", "must be > 0", self.lr)


@register
class Prune(Compressor):
    """Remove the lowest-L1 structures or weights, then optionally fine-tune on the hard labels."""

    name = "prune"
    Config = PruneConfig
    config: PruneConfig

    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        model = copy.deepcopy(model).eval()
        if self.config.ratio == 0:
            return self._finetune(model, ctx)
        if self.config.structured and is_transformer(model):
            return self._finetune(prune_heads_and_ffn(model, self.config.ratio), ctx)
        if self.config.structured:
            return self._finetune(prune_structured(model, self.config.ratio, ctx.train_x[:1]), ctx)
        masked = mask_unstructured(model, self.config.ratio)
        # Fine-tune while the masks hold pruned weights at zero, then bake them in so the state dict is plain.
        return remove_masks(self._finetune(masked, ctx))

    def _finetune(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        if self.config.finetune_epochs == 0:
            return model
        return fit(model, ctx, hard_labels(model, ctx), Optim(self.config.finetune_epochs, self.config.lr),
                   stage=self.name)


def prune_structured(model: nn.Module, ratio: float, example_input: torch.Tensor) -> nn.Module:
    """Remove ``ratio`` of every hidden layer's output neurons/channels (lowest L1 norm) in place.

    Torch-Pruning traces the dependency graph, so coupled layers (BatchNorm, the next layer's inputs) shrink too;
    the classifier's outputs are kept.
    """
    import torch_pruning as tp

    classifier = [m for m in model.modules() if isinstance(m, PRUNABLE)][-1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.BasePruner(model, example_input, importance=tp.importance.MagnitudeImportance(p=1),
                                      pruning_ratio=ratio, ignored_layers=classifier)
        pruner.step()
    return model


def mask_unstructured(model: nn.Module, ratio: float) -> nn.Module:
    """Zero the ``ratio`` smallest-magnitude weights across all prunable layers (global ranking), in place."""
    params = [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=ratio)
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
