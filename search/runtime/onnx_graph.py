"""Rewrites of an exported ONNX graph: Gemm as MatMul (what ONNX Runtime's quantizers handle), the weight layer each
node computes, and weights stored packed (low-bit codes, or only a sparse weight's survivors) with a small decoding
subgraph that ONNX Runtime folds into a plain tensor when the session loads."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from squeezer.compressors.quantize import grid

WEIGHT_OPS = ("MatMul", "Conv")
SPARSE_MIN_ZEROS = 0.5   # below this a bitmap plus the survivors is not smaller than the dense tensor
SPARSE_MIN_SIZE = 1024


def mostly_zeros(size: int, nonzero: int) -> bool:
    """Whether a weight is stored as a bitmap plus its non-zeros (in either runtime's file): large, half zeros."""
    return size >= SPARSE_MIN_SIZE and nonzero <= (1 - SPARSE_MIN_ZEROS) * size


def gemm_to_matmul(model: onnx.ModelProto) -> None:
    """Replace each Gemm with a constant weight by MatMul (+ Add for the bias); the weight keeps its name, stored as
    (in, out) like every MatMul weight."""
    graph, inits = model.graph, {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA") or \
                attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(
            np.ascontiguousarray(weight.T if attrs.get("transB") else weight), node.input[1]))
        biased = len(node.input) > 2 and node.input[2]
        product = node.output[0] + "_product" if biased else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], node.input[1]], [product], name=node.name))
        if biased:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_bias"))
    del graph.node[:]
    graph.node.extend(nodes)


def layer_nodes(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Weight layer name (as in the torch module tree) -> the MatMul or Conv node that applies its constant weight.

    The exporter names each node by its module's scope (``/features/0/Conv`` for ``features.0``); a weight it had to
    rename (a convolution with its BatchNorm folded in is ``onnx::Conv_12``) is found that way too.
    """
    inits = {i.name for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in inits:
            scope = node.name.strip("/").rpartition("/")[0]
            found[_module_name(scope) if scope else node.input[1].removesuffix(".weight")] = node
    return found


def _module_name(scope: str) -> str:
    """``head/head.0`` -> ``head.0``: a container's child is scoped by its parent's name plus its own (a ModuleList,
    never called itself, leaves only the child: ``encoder/layer.0`` -> ``encoder.layer.0``)."""
    parts: list[str] = []
    for part in scope.split("/"):
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part
        else:
            parts.append(part)
    return ".".join(parts)


def pack_lowbit(model: onnx.ModelProto, node: onnx.NodeProto, bits: int, group_size: int) -> None:
    """Store ``node``'s weight as ``bits``-bit codes (2 = ternary) with one float16 scale per group of a row."""
    init = _initializer(model, node.input[1])
    weight = numpy_helper.to_array(init)
    rows = torch.from_numpy(np.array(weight.T if node.op_type == "MatMul" else weight))  # (out, fan-in...), a copy
    codes, scale = grid.quantize(rows, bits, group_size)
    low = grid.code_range(bits)[0]
    name = init.name
    packed = grid.pack((codes.to(torch.int32) - low).flatten(), bits)
    _replace(model, init, [
        numpy_helper.from_array(packed.numpy(), name + ".codes"),
        numpy_helper.from_array(scale.half().numpy(), name + ".scale"),
    ], _decode_lowbit(name, bits, low, tuple(codes.shape), tuple(rows.shape), node.op_type == "MatMul"))


def pack_sparse(model: onnx.ModelProto) -> int:
    """Store every large weight that is mostly zeros as a bitmap of its non-zeros plus their values; returns how
    many were packed. Values keep their type, so an int8 weight packs too."""
    packed = 0
    for init in list(model.graph.initializer):
        values = numpy_helper.to_array(init)
        if values.dtype.kind not in "fi" or not mostly_zeros(values.size, int(np.count_nonzero(values))):
            continue
        mask = values.reshape(-1) != 0
        bitmap = np.packbits(mask, bitorder="little")
        survivors = np.concatenate([np.zeros(1, values.dtype), values.reshape(-1)[mask]])  # [0] for the zeros
        _replace(model, init, [
            numpy_helper.from_array(bitmap, init.name + ".bitmap"),
            numpy_helper.from_array(survivors, init.name + ".values"),
        ], _decode_sparse(init.name, values.shape, values.size))
        packed += 1
    return packed


def _decode_bits(prefix: str, source: str, bits: int, count: int) -> tuple[list[onnx.NodeProto], list, str]:
    """Nodes turning uint8 bytes into ``count`` int32 codes of ``bits`` bits each (little-end first)."""
    per_byte = 8 // bits
    consts = [numpy_helper.from_array((np.arange(per_byte, dtype=np.uint8) * bits)[None, :], prefix + ".shifts"),
              numpy_helper.from_array(np.array(2**bits - 1, dtype=np.uint8), prefix + ".mask"),
              numpy_helper.from_array(np.array([1], dtype=np.int64), prefix + ".one"),
              numpy_helper.from_array(np.array([-1], dtype=np.int64), prefix + ".flat"),
              numpy_helper.from_array(np.array([0], dtype=np.int64), prefix + ".zero"),
              numpy_helper.from_array(np.array([count], dtype=np.int64), prefix + ".count")]
    n = partial(_op, prefix)
    nodes = [n("Unsqueeze", [source, prefix + ".one"], "column"),
             n("BitShift", [prefix + ".column", prefix + ".shifts"], "shifted", direction="RIGHT"),
             n("BitwiseAnd", [prefix + ".shifted", prefix + ".mask"], "masked"),
             n("Reshape", [prefix + ".masked", prefix + ".flat"], "all"),
             n("Slice", [prefix + ".all", prefix + ".zero", prefix + ".count"], "codes")]
    return nodes, consts, prefix + ".codes"


def _decode_lowbit(name: str, bits: int, low: int, grouped: tuple[int, ...], shape: tuple[int, ...],
                   transpose: bool) -> tuple[list[onnx.NodeProto], list]:
    prefix = name + ".decode"
    nodes, consts, codes = _decode_bits(prefix, name + ".codes", bits, int(np.prod(grouped)))
    fan_in = int(np.prod(shape[1:]))
    consts += [numpy_helper.from_array(np.array(grouped, dtype=np.int64), prefix + ".grouped"),
               numpy_helper.from_array(np.array(low, dtype=np.float32), prefix + ".low"),
               numpy_helper.from_array(np.array([shape[0], -1], dtype=np.int64), prefix + ".rows"),
               numpy_helper.from_array(np.array([fan_in], dtype=np.int64), prefix + ".fan_in"),
               numpy_helper.from_array(np.array([1], dtype=np.int64), prefix + ".axis1"),
               numpy_helper.from_array(np.array([0], dtype=np.int64), prefix + ".start"),
               numpy_helper.from_array(np.array(shape, dtype=np.int64), prefix + ".shape")]
    n = partial(_op, prefix)
    nodes += [n("Cast", [codes], "float", to=TensorProto.FLOAT),
              n("Add", [prefix + ".float", prefix + ".low"], "signed"),
              n("Reshape", [prefix + ".signed", prefix + ".grouped"], "groups"),
              n("Cast", [name + ".scale"], "scale32", to=TensorProto.FLOAT),
              n("Mul", [prefix + ".groups", prefix + ".scale32"], "scaled"),
              n("Reshape", [prefix + ".scaled", prefix + ".rows"], "padded"),
              n("Slice", [prefix + ".padded", prefix + ".start", prefix + ".fan_in", prefix + ".axis1"], "rows_"),
              helper.make_node("Reshape", [prefix + ".rows_", prefix + ".shape"],
                               [name + (".torch" if transpose else "")])]
    if transpose:
        nodes.append(helper.make_node("Transpose", [name + ".torch"], [name]))
    return nodes, consts


def _decode_sparse(name: str, shape: tuple[int, ...], size: int) -> tuple[list[onnx.NodeProto], list]:
    """Position i of the weight is values[cumsum(bits)[i]] where its bit is set, values[0] (a stored zero) where
    not: static shapes only, so ONNX Runtime folds it when the session loads (a NonZero/ScatterND decoding is not
    folded and would run on every call)."""
    prefix = name + ".unpack"
    nodes, consts, bits = _decode_bits(prefix, name + ".bitmap", 1, size)
    consts += [numpy_helper.from_array(np.array(0, dtype=np.int64), prefix + ".axis"),
               numpy_helper.from_array(np.array(shape, dtype=np.int64), prefix + ".shape")]
    n = partial(_op, prefix)
    nodes += [n("Cast", [bits], "present", to=TensorProto.INT64),
              n("CumSum", [prefix + ".present", prefix + ".axis"], "rank"),
              n("Mul", [prefix + ".rank", prefix + ".present"], "index"),
              n("Gather", [name + ".values", prefix + ".index"], "dense"),
              helper.make_node("Reshape", [prefix + ".dense", prefix + ".shape"], [name])]
    return nodes, consts


def _op(prefix: str, op: str, inputs: list[str], out: str, **attributes: Any) -> onnx.NodeProto:
    """A decoding node whose output is ``prefix.out``."""
    return helper.make_node(op, inputs, [f"{prefix}.{out}"], **attributes)


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(i for i in model.graph.initializer if i.name == name)


def _replace(model: onnx.ModelProto, init: onnx.TensorProto, stored: list, decode: tuple[list, list]) -> None:
    """Swap the initializer ``init`` for ``stored`` plus the ``decode`` nodes (put first) that recreate it."""
    nodes, consts = decode
    model.graph.initializer.remove(init)
    model.graph.initializer.extend(stored + consts)
    existing = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + existing)
