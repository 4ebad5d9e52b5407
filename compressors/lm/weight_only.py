"""Weight-only quantization of a causal LM's linear layers for the CPU: int8 (one byte a weight) or int4 (two weights a
byte), symmetric, one scale per group of ``group_size`` input channels; activations stay in floating point and each
weight is dequantized as the layer runs. The embedding (tied to the output head in most small models) stays as it is.

It serves the ``torch`` runtime of a language model (``measure.runtime: torch``); the default runtime, ONNX Runtime
GenAI, quantizes with its own model builder (``MatMulNBits``) and runs int4 faster than fp32. PyTorch's CPU
weight-only kernels were measured here and not used: ``aten._weight_int8pack_mm`` (per-channel scales only) and
``_weight_int4pack_mm_for_cpu`` ran a 1024 x 256 layer at batch 1 12x and 25x slower than the float matmul (one
thread, interleaved, torch 2.13 on this CPU).

Why our own: torchao 0.18's int8 weight-only layer runs on the CPU, but its int4 formats need CUDA or XPU kernels
(its CPU int4, ``IntxWeightOnlyConfig``, keeps one value a byte: no smaller than int8), and its tensor subclasses do
not save to safetensors. Here the packed weights are plain tensors: ``save`` writes them as safetensors beside the
config and tokenizer, and ``load`` rebuilds the model from that folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

QUANTIZATION_FILE = "squeezer_quantization.json"


class WeightOnlyLinear(nn.Module):
    """A linear layer whose weight is held as ``bits``-bit integers (int4 packed two a byte) with a float16 scale per
    group of ``group_size`` input channels."""

    def __init__(self, out_features: int, in_features: int, bits: int, group_size: int, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features, self.bits, self.group_size = in_features, out_features, bits, group_size
        width = in_features if bits == 8 else (in_features + 1) // 2
        packed = torch.int8 if bits == 8 else torch.uint8
        self.register_buffer("qweight", torch.zeros(out_features, width, dtype=packed))
        self.register_buffer("scales", torch.ones(out_features, -(-in_features // group_size), dtype=torch.float16))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, bits: int, group_size: int) -> "WeightOnlyLinear":
        weight = linear.weight.detach().float()
        layer = cls(weight.shape[0], weight.shape[1], bits, group_size, linear.bias is not None)
        top = 2 ** (bits - 1) - 1  # 127, or 7
        groups = _grouped(weight, group_size)  # [out, groups, group_size]
        scales = (groups.abs().amax(-1) / top).clamp_min(1e-8).half()
        q = torch.round(groups / scales.float()[..., None]).clamp(-top - 1, top).flatten(1)[:, :weight.shape[1]]
        layer.scales.copy_(scales)
        if bits == 8:
            layer.qweight.copy_(q.to(torch.int8))
        else:
            nibbles = (q.to(torch.int16) & 0xF).to(torch.uint8)
            if nibbles.shape[1] % 2:
                nibbles = nn.functional.pad(nibbles, (0, 1))
            layer.qweight.copy_(nibbles[:, 0::2] | (nibbles[:, 1::2] << 4))
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach().float())
        return layer

    def weight_float(self) -> torch.Tensor:
        """The dequantized weight ``[out, in]``."""
        if self.bits == 8:
            q = self.qweight.float()
        else:
            low, high = (self.qweight & 0xF).to(torch.int8), (self.qweight >> 4).to(torch.int8)
            q = torch.stack([low, high], dim=-1).flatten(1)[:, :self.in_features]
            q = torch.where(q > 7, q - 16, q).float()
        groups = _grouped(q, self.group_size) * self.scales.float()[..., None]
        return groups.flatten(1)[:, :self.in_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight_float().to(x.dtype),
                                    None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int{self.bits}, group={self.group_size}"


def _grouped(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    pad = -weight.shape[1] % group_size
    if pad:
        weight = nn.functional.pad(weight, (0, pad))
    return weight.view(weight.shape[0], -1, group_size)


def quantize(model: nn.Module, bits: int, group_size: int = 32) -> nn.Module:
    """``model`` (changed in place, and returned) with every linear layer but the output head weight-only
    quantized to ``bits`` (8 or 4)."""
    return _swap(model, bits, group_size, lambda linear: WeightOnlyLinear.from_linear(linear, bits, group_size))


def _swap(model: nn.Module, bits: int, group_size: int, make) -> nn.Module:  # noqa: ANN001 - Linear -> layer
    head = model.get_output_embeddings()
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child is not head:
                setattr(module, child_name, make(child))
    model.config.squeezer_quantization = {"bits": bits, "group_size": group_size}
    return model


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, WeightOnlyLinear) for m in model.modules())


def save(model: nn.Module, folder: Path) -> None:
    """Write a weight-only quantized model: its config (``save_pretrained``'s), the packed weights as
    ``model.safetensors`` and how they are packed (``squeezer_quantization.json``)."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"))
    (folder / QUANTIZATION_FILE).write_text(json.dumps(model.config.squeezer_quantization) + "\n")


def load(folder: Path) -> nn.Module:
    """A model ``save`` wrote: its architecture built from the config, its linear layers replaced by empty packed
    ones, every weight then loaded from safetensors (strictly: a missing or unexpected tensor is an error; no
    pickled code)."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = json.loads((folder / QUANTIZATION_FILE).read_text())
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_config(config)  # its buffers (rotary frequencies) made as the model makes them
    bits, group_size = int(settings["bits"]), int(settings["group_size"])
    _swap(model, bits, group_size, lambda linear: WeightOnlyLinear(linear.out_features, linear.in_features, bits,
                                                                   group_size, linear.bias is not None))
    load_model(model, str(folder / "model.safetensors"), strict=True)
    model.tie_weights()
    return model.eval()


__all__ = ["QUANTIZATION_FILE", "WeightOnlyLinear", "is_quantized", "load", "quantize", "save"]
