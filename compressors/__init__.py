"""Compressor plugins: each is a name, a frozen config and one ``apply(model, ctx)`` transform.

Knows nothing of Optuna, Ray or MLflow. Third-party compressors register under the ``squeezer.compressors``
entry-point group.
"""

from squeezer.compressors.base import Compressor, CompressorConfig, InvalidConfig, TrialContext
from squeezer.compressors.distill import Distill, DistillConfig, TeacherOutputs, kd_loss
from squeezer.compressors.lm import LmContext, LmDistill, LmPrune, LmQuantize
from squeezer.compressors.lowrank import LowRank, LowRankConfig
from squeezer.compressors.prune import Prune, PruneConfig
from squeezer.compressors.quantize import Quantize, QuantizeConfig
from squeezer.compressors.registry import UnknownCompressor, available, get, register

__all__ = [
    "Compressor", "CompressorConfig", "Distill", "DistillConfig", "InvalidConfig", "LmContext", "LmDistill", "LmPrune",
    "LmQuantize", "LowRank", "LowRankConfig",
    "Prune", "PruneConfig", "Quantize", "QuantizeConfig", "TeacherOutputs", "TrialContext", "UnknownCompressor",
    "available", "get", "kd_loss", "register",
]
