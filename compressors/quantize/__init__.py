"""Quantization: the ``quantize`` compressor decides each layer's bit-width (``compressor``, ``plan``); ``grid``
holds the low-bit arithmetic; ``torch_int8`` realises a plan in PyTorch (the ONNX Runtime realisation lives with
that runtime, in ``squeezer.search.runtime``)."""

from squeezer.compressors.quantize.compressor import BITS, Quantize, QuantizeConfig, Quantized, float_model
from squeezer.compressors.quantize.plan import Plan, weight_layers
from squeezer.compressors.quantize.torch_int8 import HALF_DTYPES, Precision, dynamic_int8, static_int8

__all__ = ["BITS", "HALF_DTYPES", "Plan", "Precision", "Quantize", "QuantizeConfig", "Quantized", "dynamic_int8",
           "float_model", "static_int8", "weight_layers"]
