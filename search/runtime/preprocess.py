"""The preprocessing inference needs, made part of the deployed model in each runtime, so that the model takes the
user's raw input: in ONNX, Sub and Div nodes before the first layer plus metadata (input, shape, type, classes,
preprocessing); in torch, a module in front of the model (and its statistics in the saved state)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from squeezer.search.data.inputs import InputSpec, Standardize
from squeezer.search.runtime.onnx_export import INPUT

METADATA = "squeezer."  # prefix of the ONNX metadata keys


class Standardized(nn.Module):
    """``model((x - mean) / std)``: a trained model that takes raw features."""

    def __init__(self, standardize: Standardize, model: nn.Module) -> None:
        super().__init__()
        mean, std = standardize.tensors()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def taking_raw_input(model: nn.Module, spec: InputSpec | None) -> nn.Module:
    """``model`` with the preprocessing of ``spec`` in front (``model`` itself if there is none)."""
    if spec is None or spec.standardize is None:
        return model
    return Standardized(spec.standardize, model).eval()


def prepend_to_onnx(proto: onnx.ModelProto, spec: InputSpec) -> None:
    """Make the graph standardise its input first (in the input's own float type) and record ``spec`` in its
    metadata; ``proto`` is changed in place."""
    graph = proto.graph
    if spec.standardize is not None:
        source = next(i for i in graph.input if i.name == INPUT)
        dtype = helper.tensor_dtype_to_np_dtype(source.type.tensor_type.elem_type)
        standardized = f"{INPUT}_standardized"
        for node in graph.node:
            node.input[:] = [standardized if name == INPUT else name for name in node.input]
        mean, std = (t.numpy().astype(dtype) for t in spec.standardize.tensors())
        graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(mean), "squeezer_mean"),
                                  numpy_helper.from_array(np.ascontiguousarray(std), "squeezer_std")])
        first = [helper.make_node("Sub", [INPUT, "squeezer_mean"], [f"{INPUT}_centred"], name="squeezer_centre"),
                 helper.make_node("Div", [f"{INPUT}_centred", "squeezer_std"], [standardized],
                                  name="squeezer_scale")]
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend(first + nodes)
    described = {"input": INPUT, **spec.describe()}
    for key, value in described.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"{METADATA}{key}", json.dumps(value)


def onnx_metadata(proto: onnx.ModelProto) -> dict[str, object]:
    """What ``prepend_to_onnx`` recorded, by key without its prefix."""
    return {p.key.removeprefix(METADATA): json.loads(p.value) for p in proto.metadata_props
            if p.key.startswith(METADATA)}


__all__ = ["Standardized", "onnx_metadata", "prepend_to_onnx", "taking_raw_input"]
