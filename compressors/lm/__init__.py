"""Compressors for causal language models: ``lm_prune`` (Minitron-style depth and width pruning), ``lm_distill``
(token-level, sequence-level and on-policy distillation with forward KL, reverse KL, generalised JSD or skew KL),
``lm_quantize`` (bf16, int8 and int4 weight-only). They run on an ``LmContext``: token blocks and the teacher."""

from squeezer.compressors.lm.context import LmContext, Sequences, TopK, perplexity
from squeezer.compressors.lm.distill import LmDistill, LmDistillConfig
from squeezer.compressors.lm.losses import LOSSES
from squeezer.compressors.lm.prune import LmPrune, LmPruneConfig
from squeezer.compressors.lm.quantize import LM_BITS, LmQuantize, LmQuantizeConfig

__all__ = ["LM_BITS", "LOSSES", "LmContext", "LmDistill", "LmDistillConfig", "LmPrune", "LmPruneConfig",
           "LmQuantize", "LmQuantizeConfig", "Sequences", "TopK", "perplexity"]
