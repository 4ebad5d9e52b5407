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


def quantize_onnx(path: Path, plan: Plan, calibration: torch.Tensor, layers: list[str]) -> None:
    """Rewrite the ONNX file at ``path`` so that each of the model's weight ``layers`` computes at the plan's bits."""
    model = onnx.load(str(path))
    if plan.bits == 16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with _quiet():
            onnx.save(convert_float_to_float16(model, keep_io_types=True), str(path))
        return
    nodes = layer_nodes(model)
    missing = sorted(set(layers) - set(nodes))
    if missing:  # a layer left out would be reported as quantized while it runs in float
        raise RuntimeError(f"the exported graph has no node for the weight layers {missing}; found {sorted(nodes)}")
    lowbit = {layer: node for layer, node in nodes.items() if plan.bits_of(layer) in (4, 2)}
    matmul4 = [node.name for layer, node in lowbit.items() if plan.bits_of(layer) == 4 and node.op_type == "MatMul"]
    for layer, node in lowbit.items():
        if node.name not in matmul4:
            pack_lowbit(model, node, plan.bits_of(layer), plan.group_size)
    if matmul4:
        model = _matmul_nbits(model, matmul4, plan.group_size)
    onnx.save(model, str(path))
    at8 = [node for layer, node in nodes.items() if plan.bits_of(layer) == 8]
    dynamic: list[str] = []
    if at8 and plan.int8_mode == "static":
        _static_int8(path, [node.name for layer, node in nodes.items() if plan.bits_of(layer) != 8], plan,
                     calibration)
    else:  # dynamic int8 convolutions (ConvInteger) ran 3-6x slower than fp32 here: like torch.ao, MatMuls only
        dynamic = [node.name for node in at8 if node.op_type == "MatMul"]
    if plan.bits <= 8:
        dynamic += token_tables(model)  # static int8 leaves Gathers (and their names) as they are
    if dynamic:
        _dynamic_int8(path, dynamic, plan)


def token_tables(model: onnx.ModelProto, rows: int = 1024) -> list[str]:
    """The Gather nodes that read a large embedding table: most of a small text model's bytes, int8 by rows."""
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type == "Gather" and len(shapes.get(n.input[0], ())) == 2 and shapes[n.input[0]][0] >= rows]


def _matmul_nbits(model: onnx.ModelProto, names: list[str], group_size: int) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # accuracy level 4: int8 activations inside the kernel, the fastest MatMulNBits on CPU here (fp32 compute was
    # 1.9x slower than fp32 at batch 1)
    # its nodes_to_include adds to every MatMul rather than choosing among them: exclude the others instead
    others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in names]
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=group_size, is_symmetric=True, accuracy_level=4,
                                     nodes_to_exclude=others)
    with _quiet():
        quantizer.process()
    return quantizer.model.model


#: What static int8 quantizes besides the weight layers: the ops between them, so activations stay int8 from one
#: layer to the next (quantizing only the weight layers left a dequantize-requantize pair around every ReLU and
#: pooling, and the int8 CNN ran 1.8x slower than fp32).
STATIC_OPS = ["Conv", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten"]


def _dynamic_int8(path: Path, names: list[str], plan: Plan) -> None:
    """int8 weights for the nodes ``names`` (MatMul layers, token tables), activations quantized on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _replacing(path) as tmp:
        quantize_dynamic(path, tmp, weight_type=QuantType.QInt8, per_channel=plan.per_channel,
                         nodes_to_quantize=names, reduce_range=not has_vnni(),
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})


def _static_int8(path: Path, others: list[str], plan: Plan, calibration: torch.Tensor) -> None:
    """int8 weights and activations (QDQ) everywhere but the ``others`` nodes, calibrated on ``calibration``.

    Weights are symmetric int8 (what ONNX Runtime's x86 kernels want); ``symmetric`` is about activations: int8
    around zero, or uint8 with a zero point (ONNX Runtime's default, and the one whose ReLUs fold into the convs).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.split(64))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT: batch.numpy()}

    activations = QuantType.QInt8 if plan.symmetric else QuantType.QUInt8
    # DefaultTensorType: shape inference cannot type the outputs of ONNX Runtime's own ops (MatMulNBits).
    options = {"ActivationSymmetric": plan.symmetric, "DefaultTensorType": onnx.TensorProto.FLOAT}
    with _replacing(path) as tmp:
        quantize_static(path, tmp, Reader(), quant_format=QuantFormat.QDQ, per_channel=plan.per_channel,
                        activation_type=activations, weight_type=QuantType.QInt8, op_types_to_quantize=STATIC_OPS,
                        nodes_to_exclude=others, reduce_range=not has_vnni(), extra_options=options)


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary file that replaces ``path`` once written; ONNX Runtime's quantizers are quiet meanwhile."""
    tmp = path.with_suffix(".tmp.onnx")
    with _quiet():
        yield tmp
    os.replace(tmp, path)


def has_vnni() -> bool:
    """Whether this CPU has VNNI dot-product instructions. Without them ONNX Runtime multiplies uint8 by int8 with
    VPMADDUBSW, whose int16 sums saturate: 7-bit weights (``reduce_range``) avoid it (a static int8 CNN lost 1.2
    points on the full range here, and none on the reduced one)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_vnni", "avx_vnni", "avx512vnni"))


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
