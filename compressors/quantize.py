"""Lower the precision a model runs in: fp32, fp16/bf16, or int8 (dynamic or static post-training quantization)."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from squeezer.compressors.base import Compressor, CompressorConfig, TrialContext, check
from squeezer.compressors.registry import register

HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
INT8_MODES = ("auto", "dynamic", "static")


class Precision(nn.Module):
    """Runs ``model`` in ``dtype`` behind a float32 interface, so callers need not know the precision."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model.to(dtype), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype) if x.is_floating_point() else x).float()  # token ids stay integers


@dataclass(frozen=True)
class QuantizeConfig(CompressorConfig):
    bits: int = 8
    half: str = "bf16"          # the 16-bit format: bf16 or fp16
    int8_mode: str = "auto"     # auto: static when the model has convolutions (dynamic int8 leaves them fp32)
    calibration_samples: int = 512

    def validate(self) -> None:
        check(self.bits in (32, 16, 8), "bits", "must be one of [32, 16, 8]", self.bits)
        check(self.half in HALF_DTYPES, "half", f"must be one of {sorted(HALF_DTYPES)}", self.half)
        check(self.int8_mode in INT8_MODES, "int8_mode", f"must be one of {list(INT8_MODES)}", self.int8_mode)
        check(self.calibration_samples >= 1, "calibration_samples", "must be >= 1", self.calibration_samples)


@register
class Quantize(Compressor):
    """Post-training quantization; the result really computes in the chosen precision on CPU."""

    name = "quantize"
    Config = QuantizeConfig
    final = True
    config: QuantizeConfig

    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        model = copy.deepcopy(model).eval()
        if self.config.bits == 32:
            return model
        if self.config.bits == 16:
            return Precision(model, HALF_DTYPES[self.config.half]).eval()
        if self._int8_mode(model) == "dynamic":
            return dynamic_int8(model)
        return static_int8(model, ctx.train_x[: self.config.calibration_samples])

    def _int8_mode(self, model: nn.Module) -> str:
        if self.config.int8_mode != "auto":
            return self.config.int8_mode
        has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        return "static" if has_conv else "dynamic"


def dynamic_int8(model: nn.Module) -> nn.Module:
    """int8 weights, activations quantized on the fly: torch.ao's fbgemm kernels were the fastest int8 on CPU here.
    Token embedding tables (most of a small text model's bytes) become int8 rows with a float scale each."""
    from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig

    torch.backends.quantized.engine = _engine()
    spec: dict[type[nn.Module] | str, object] = {nn.Linear: default_dynamic_qconfig}
    spec |= {name: float_qparams_weight_only_qconfig for name, m in model.named_modules() if _token_table(m)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao, slower on CPU
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def _token_table(module: nn.Module) -> bool:
    """A token embedding table: large (position and segment tables are small, and Hugging Face indexes them with
    views torch.ao's int8 embeddings refuse)."""
    return isinstance(module, nn.Embedding) and module.num_embeddings >= 1024


@torch.no_grad()
def static_int8(model: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """int8 weights and activations (convolutions included) via FX graph-mode PTQ calibrated on ``calibration``."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = _engine()
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(model, get_default_qconfig_mapping(engine), example_inputs=(calibration[:1],))
        for batch in calibration.split(128):
            prepared(batch)
        return convert_fx(prepared).eval()


def _engine() -> str:
    engines = torch.backends.quantized.supported_engines
    return next(e for e in ("x86", "fbgemm", "qnnpack") if e in engines)
