"""Quantization realised in PyTorch: fp16/bf16 behind a float32 interface, and torch.ao's int8 (dynamic or static)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision(nn.Module):
    """Runs ``model`` in ``dtype`` behind a float32 interface, so callers need not know the precision."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model.to(dtype), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype) if x.is_floating_point() else x).float()  # token ids stay integers


def dynamic_int8(model: nn.Module, keep_float: frozenset[str] = frozenset()) -> nn.Module:
    """int8 weights, activations quantized on the fly: torch.ao's fbgemm kernels were the fastest int8 on CPU here.
    Token embedding tables (most of a small text model's bytes) become int8 rows with a float scale each. Layers
    named in ``keep_float`` stay float."""
    from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig

    torch.backends.quantized.engine = _engine()
    spec: dict[type[nn.Module] | str, object] = {
        name: default_dynamic_qconfig for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name not in keep_float}
    spec |= {name: float_qparams_weight_only_qconfig for name, m in model.named_modules() if _token_table(m)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao, slower on CPU
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def _token_table(module: nn.Module) -> bool:
    """A token embedding table: large (position and segment tables are small, and Hugging Face indexes them with
    views torch.ao's int8 embeddings refuse)."""
    return isinstance(module, nn.Embedding) and module.num_embeddings >= 1024


@torch.no_grad()
def static_int8(model: nn.Module, calibration: torch.Tensor, per_channel: bool = True,
                keep_float: frozenset[str] = frozenset()) -> nn.Module:
    """int8 weights and activations (convolutions included) via FX graph-mode PTQ calibrated on ``calibration``."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import default_weight_observer
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = _engine()
    torch.backends.quantized.engine = engine
    mapping = get_default_qconfig_mapping(engine)
    default = mapping.global_qconfig
    if not per_channel and default is not None:
        mapping = mapping.set_global(QConfig(activation=default.activation, weight=default_weight_observer))
    for name in keep_float:
        mapping = mapping.set_module_name(name, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(model, mapping, example_inputs=(calibration[:1],))
        for batch in calibration.split(128):
            prepared(batch)
        return convert_fx(prepared).eval()


def _engine() -> str:
    engines = torch.backends.quantized.supported_engines
    return next(e for e in ("x86", "fbgemm", "qnnpack") if e in engines)
