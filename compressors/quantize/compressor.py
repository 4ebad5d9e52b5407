"""The ``quantize`` compressor: decides each weight layer's bit-width (optionally trains for it), and leaves the
realisation to the runtime the study measures in (torch.ao in PyTorch, ONNX Runtime's quantizers in ONNX Runtime)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from squeezer.compressors.base import Compressor, CompressorConfig, TrialContext, check
from squeezer.compressors.distill.losses import kd_loss
from squeezer.compressors.quantize.grid import fake_quantize
from squeezer.compressors.quantize.plan import Plan, weight_layers
from squeezer.compressors.quantize.torch_int8 import HALF_DTYPES
from squeezer.compressors.registry import register
from squeezer.compressors.training import Optim, fit, hard_labels

BITS = (32, 16, 8, 4, 2)        # 2 bits: ternary weights
LAYER_BITS = (32, 8, 4, 2)      # what one layer may differ to (16 bits is all or nothing)
BIT_NAMES = {32: "fp32", 16: "fp16", 8: "int8", 4: "int4", 2: "ternary"}
INT8_MODES = ("auto", "dynamic", "static")


@dataclass(frozen=True)
class QuantizeConfig(CompressorConfig):
    bits: int = 8
    half: str = "fp16"          # the 16-bit format: fp16 or bf16 (bf16 only in the torch runtime)
    int8_mode: str = "auto"     # auto: static when the model has convolutions (dynamic int8 leaves them float)
    per_channel: bool = True    # int8: one scale per output channel (else per tensor)
    symmetric: bool = False     # static int8 activations: int8 around zero, or (default) uint8 with a zero point
    group_size: int = 32        # int4 / ternary: weights per scale along each row
    ends_bits: int = 8          # the first and last weight layers, when higher than bits (32: float; 2: no exception)
    layer_bits: dict[str, int] = field(default_factory=dict)  # per-layer overrides by module name (not at 16 bits:
    #                                                            a 16-bit model is 16-bit throughout)
    calibration_samples: int = 512
    qat_epochs: int = 0         # quantization-aware fine-tuning: fake-quantized weights, distilled from the teacher
    qat_lr: float = 5e-4

    def validate(self) -> None:
        check(self.bits in BITS, "bits", f"must be one of {list(BITS)} (2 = ternary)", self.bits)
        check(self.half in HALF_DTYPES, "half", f"must be one of {sorted(HALF_DTYPES)}", self.half)
        check(self.int8_mode in INT8_MODES, "int8_mode", f"must be one of {list(INT8_MODES)}", self.int8_mode)
        for name in ("per_channel", "symmetric"):
            check(isinstance(getattr(self, name), bool), name, "must be true or false", getattr(self, name))
        check(isinstance(self.group_size, int) and self.group_size in [2**k for k in range(4, 11)], "group_size",
              "must be a power of two in [16, 1024]", self.group_size)
        check(self.ends_bits in LAYER_BITS, "ends_bits", f"must be one of {list(LAYER_BITS)}", self.ends_bits)
        check(isinstance(self.layer_bits, dict), "layer_bits", "must map layer names to bits", self.layer_bits)
        for layer in self.layer_bits:
            check(isinstance(layer, (str, int)) and not isinstance(layer, bool), "layer_bits",
                  "must map layer names (such as \"3\" or \"features.0\") to bits", layer)
        # YAML reads an unquoted layer name such as 3 as a number; module names are strings
        object.__setattr__(self, "layer_bits", {str(k): v for k, v in self.layer_bits.items()})
        for layer, bits in self.layer_bits.items():
            check(bits in LAYER_BITS, f"layer_bits.{layer}", f"must be one of {list(LAYER_BITS)}", bits)
        check(isinstance(self.calibration_samples, int) and self.calibration_samples >= 1, "calibration_samples",
              "must be an integer >= 1", self.calibration_samples)
        check(isinstance(self.qat_epochs, int) and self.qat_epochs >= 0, "qat_epochs", "must be an integer >= 0",
              self.qat_epochs)
        check(not (self.qat_epochs and self.bits > 8), "qat_epochs", "needs bits 8, 4 or 2", self.qat_epochs)
        check(self.qat_lr > 0, "qat_lr", "must be > 0", self.qat_lr)

    def plan(self, model: nn.Module) -> Plan:
        """The per-layer bits for ``model``: ``bits`` everywhere, its first and last weight layers at
        ``ends_bits`` when that is higher, then the ``layer_bits`` overrides."""
        layers = weight_layers(model)
        ends = {layers[0], layers[-1]} if layers and self.bits < self.ends_bits else set()
        layer_bits = {name: self.ends_bits for name in ends} | dict(self.layer_bits) if self.bits != 16 else {}
        has_conv = any(isinstance(m, (nn.Conv1d, nn.Conv2d)) for m in model.modules())
        mode = self.int8_mode if self.int8_mode != "auto" else "static" if has_conv else "dynamic"
        return Plan(self.bits, layer_bits, self.half, mode, self.per_channel, self.symmetric, self.group_size)


class Quantized(nn.Module):
    """A student and the ``Plan`` a runtime realises for it. Its own forward runs the float student: what a trial
    measures is the runtime's artifact, not this."""

    def __init__(self, model: nn.Module, plan: Plan, calibration: torch.Tensor) -> None:
        super().__init__()
        self.model, self.plan, self.calibration = model, plan, calibration

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def float_model(model: nn.Module) -> nn.Module:
    """The float student inside a ``Quantized`` plan; any other model is its own."""
    return model.model if isinstance(model, Quantized) else model


@register
class Quantize(Compressor):
    """Post-training quantization (or QAT with ``qat_epochs``) to fp16/bf16, int8, int4 or ternary weights."""

    name = "quantize"
    Config = QuantizeConfig
    searched = {"bits": {"choice": [32, 16, 8]}}
    final = True
    config: QuantizeConfig
    training_fields = ("qat_epochs",)

    def label(self) -> str:
        return BIT_NAMES.get(self.config.bits, f"{self.config.bits} bits")

    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        model = copy.deepcopy(model).eval()
        plan = self.config.plan(model)
        if self.config.qat_epochs:
            model = self._qat(model, plan, ctx)
        # trained on the device; deployed from the CPU
        return Quantized(model.cpu(), plan, ctx.train_x[: self.config.calibration_samples].cpu()).eval()

    def check_models(self, student: nn.Module, teachers: Sequence[nn.Module], example: torch.Tensor) -> None:
        known = weight_layers(student)
        for layer in self.config.layer_bits:
            check(layer in known, f"layer_bits.{layer}", f"is not a weight layer; the student's are {known}", layer)

    def _qat(self, model: nn.Module, plan: Plan, ctx: TrialContext) -> nn.Module:
        """Fine-tune with every quantized layer's weight seen through its grid (straight-through gradients),
        distilled from the teacher's cached logits when there is one, else on the labels."""
        modules = dict(model.named_modules())
        for name in weight_layers(model):
            if plan.bits_of(name) <= 8:
                parametrize.register_parametrization(modules[name], "weight", _FakeQuant(plan.bits_of(name),
                                                                                          plan.group_size))
        if ctx.teachers is not None:
            logits = ctx.teachers.logits()
            def loss(idx: torch.Tensor) -> torch.Tensor:
                return kd_loss(model(ctx.inputs(idx)), ctx.device.put(logits[idx]), ctx.labels(idx), 2.0, 0.5, 0.5)
        else:
            loss = hard_labels(model, ctx)
        fit(model, ctx, loss, Optim(self.config.qat_epochs, self.config.qat_lr), stage="qat")
        for name in weight_layers(model):
            if parametrize.is_parametrized(modules[name]):
                parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=False)
        return model


class _FakeQuant(nn.Module):
    def __init__(self, bits: int, group_size: int) -> None:
        super().__init__()
        # int8 layers are per output channel in every runtime; only low-bit layers use groups
        self.bits, self.group_size = bits, group_size if bits < 8 else 0

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize(w, self.bits, self.group_size)
