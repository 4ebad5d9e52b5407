"""Realise a quantization ``Plan`` on an exported ONNX file with ONNX Runtime's tools: fp16 conversion, int8 dynamic
or static QDQ (calibrated), 4-bit weight-only MatMulNBits. Where ONNX Runtime has no format (ternary weights, 4-bit
convolutions) the weights are packed here and unpacked by the session when it loads."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import onnx
import torch

from squeezer.compressors.quantize import Plan
from squeezer.search.runtime.onnx_export import INPUT
from squeezer.search.runtime.onnx_graph import layer_nodes, pack_lowbit


def quantize_onnx(path: Path, plan: Plan, calibration: torch.Tensor) -> None:
    """Rewrite the ONNX file at ``path`` so that each weight layer computes at the plan's bits."""
    model = onnx.load(str(path))
    if plan.bits == 16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with _quiet():
            onnx.save(convert_float_to_float16(model, keep_io_types=True), str(path))
        return
    nodes = layer_nodes(model)
    lowbit = {layer: node for layer, node in nodes.items() if plan.bits_of(layer) in (4, 2)}
    matmul4 = [node.name for layer, node in lowbit.items() if plan.bits_of(layer) == 4 and node.op_type == "MatMul"]
    for layer, node in lowbit.items():
        if node.name not in matmul4:
            pack_lowbit(model, node, plan.bits_of(layer), plan.group_size)
    if matmul4:
        model = _matmul_nbits(model, matmul4, plan.group_size)
    onnx.save(model, str(path))
    int8 = [node.name for layer, node in nodes.items() if plan.bits_of(layer) == 8]
    if int8:
        _int8(path, int8, plan, calibration)


def _matmul_nbits(model: onnx.ModelProto, names: list[str], group_size: int) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=group_size, is_symmetric=True, bits=4)
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=group_size, is_symmetric=True,
                                     nodes_to_include=names, algo_config=config)
    with _quiet():
        quantizer.process()
    return quantizer.model.model


def _int8(path: Path, names: list[str], plan: Plan, calibration: torch.Tensor) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static

    weights = QuantType.QInt8 if plan.symmetric else QuantType.QUInt8
    options = {"WeightSymmetric": plan.symmetric, "ActivationSymmetric": plan.symmetric}
    tmp = path.with_suffix(".int8.onnx")
    with _quiet():
        if plan.int8_mode == "dynamic":
            quantize_dynamic(path, tmp, weight_type=weights, per_channel=plan.per_channel, nodes_to_quantize=names,
                             extra_options={"WeightSymmetric": plan.symmetric, "MatMulConstBOnly": True})
        else:
            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.batches = iter(calibration.split(64))

                def get_next(self) -> dict | None:
                    batch = next(self.batches, None)
                    return None if batch is None else {INPUT: batch.numpy()}

            activations = QuantType.QInt8 if plan.symmetric else QuantType.QUInt8
            quantize_static(path, tmp, Reader(), quant_format=QuantFormat.QDQ, per_channel=plan.per_channel,
                            activation_type=activations, weight_type=weights, nodes_to_quantize=names,
                            extra_options=options)
    os.replace(tmp, path)


@contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizers log advice and progress at INFO/WARNING for every node."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
