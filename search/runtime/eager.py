"""The torch runtime: the model runs in PyTorch eager mode; quantization is realised with torch.ao; the artifact is
its state dict, with mostly-zero tensors stored as a bitmap plus their survivors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from squeezer.compressors.quantize import HALF_DTYPES, Precision, Quantized, dynamic_int8, static_int8, \
    weight_layers
from squeezer.compressors.training import predict
from squeezer.search.data.inputs import InputSpec
from squeezer.search.runtime.onnx_graph import mostly_zeros

SUPPORTED_BITS = (32, 16, 8)


def runs_on_gpu() -> bool:
    """Whether this torch runs on a CUDA GPU."""
    return torch.cuda.is_available()


class EagerModel:
    """A realised torch model and its saved state dict, run on ``device``; its outputs come back to the CPU (so a
    GPU's run is timed to its end)."""

    def __init__(self, model: nn.Module, path: Path, device: str = "cpu") -> None:
        self.device, self.path = torch.device(device), path
        # a copy on a GPU: the model deployed may be the trial's own, which is measured and exported on the CPU
        self.model = (model if self.device.type == "cpu" else copy.deepcopy(model).to(self.device)).eval()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x.to(self.device)).cpu()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return predict(self.model, x)


def realise(model: nn.Module) -> nn.Module:
    """The torch module that computes what ``model`` (maybe a ``Quantized`` plan) asks for."""
    if not isinstance(model, Quantized):
        return model
    plan, inner = model.plan, model.model
    if plan.bits == 16:
        return Precision(copy.deepcopy(inner), HALF_DTYPES[plan.half]).eval()  # .to() would change the plan's model
    bits = {name: plan.bits_of(name) for name in weight_layers(inner)}
    if not bits and plan.bits < 16:
        raise ValueError(f"quantize.bits: the torch runtime quantizes Linear and Conv layers, and this model has "
                         f"none (a torch.export program calls operators); measure.runtime: onnxruntime quantizes its "
                         f"graph; not {plan.bits}")
    unsupported = sorted({b for b in bits.values() if b not in SUPPORTED_BITS})
    if unsupported:
        raise ValueError(f"quantize.bits: the torch runtime runs {list(SUPPORTED_BITS)} bits, not {unsupported}; "
                         f"measure.runtime: onnxruntime runs 4 and 2 (ternary)")
    if 8 not in bits.values():
        return inner
    keep = frozenset(name for name, b in bits.items() if b == 32)
    if plan.int8_mode == "dynamic":
        return dynamic_int8(inner, keep_float=keep)
    return static_int8(inner, model.calibration, per_channel=plan.per_channel, keep_float=keep)


def deploy(model: nn.Module, path: Path, example: torch.Tensor | None = None, threads: int = 1,
           spec: InputSpec | None = None, device: str = "cpu") -> EagerModel:
    """Realise ``model``'s quantization and save its state (with the statistics of ``spec``'s preprocessing, which
    the deployed model applies to its raw input first). ``example`` and ``threads``: the runtimes' common signature
    (an eager model needs no example, and is timed under the caller's threads)."""
    from squeezer.search.runtime.preprocess import taking_raw_input

    realised = taking_raw_input(realise(model), spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(packed_state(realised.state_dict()), path)
    return EagerModel(realised, path, device)


def packed_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with each large float tensor that is mostly zeros stored as ``name.bitmap`` + ``name.values``."""
    packed: dict[str, Any] = {}
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and \
                mostly_zeros(value.numel(), int(torch.count_nonzero(value))):
            flat = value.detach().reshape(-1)
            packed[name + ".bitmap"] = torch.from_numpy(np.packbits((flat != 0).numpy(), bitorder="little"))
            packed[name + ".values"] = flat[flat != 0].clone()
            packed[name + ".shape"] = torch.tensor(value.shape)
        else:
            packed[name] = value
    return packed


def unpacked_state(packed: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``packed_state``."""
    state: dict[str, Any] = {}
    for name, value in packed.items():
        if name.endswith(".bitmap"):
            base = name.removesuffix(".bitmap")
            shape = tuple(packed[base + ".shape"].tolist())
            mask = np.unpackbits(value.numpy(), bitorder="little")[: int(np.prod(shape))].astype(bool)
            values = packed[base + ".values"]
            dense = torch.zeros(mask.size, dtype=values.dtype)
            dense[torch.from_numpy(mask)] = values
            state[base] = dense.reshape(shape)
        elif not name.endswith((".values", ".shape")) or name.rsplit(".", 1)[0] + ".bitmap" not in packed:
            state[name] = value
    return state
