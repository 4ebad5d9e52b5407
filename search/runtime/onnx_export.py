"""Export a torch model to ONNX (the file users deploy), with a clear error naming a layer that does not export."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Callable

import onnx
import torch
from torch import nn

from squeezer.search.data.text import full_length
from squeezer.search.runtime.onnx_graph import gemm_to_matmul

OPSET = 20
INPUT, OUTPUT = "input", "logits"


class ExportError(RuntimeError):
    """The model (one of its layers, named in the message) cannot be written as ONNX."""


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> onnx.ModelProto:
    """Write ``model`` (eval mode, any batch size) to ``path`` as ONNX with Gemm nodes as MatMul; return it.

    A text model (one with a ``pad_id``) is traced on tokens without padding: it then keeps every position, and
    padding is masked at run time as in torch (a traced cut of padding columns would fix the length for good)."""
    model = model.eval()
    pad_id = getattr(model, "pad_id", None)
    if pad_id is not None and not example.is_floating_point():
        example = full_length(example, pad_id)
    try:
        _export(model, example, path)
    except Exception as err:  # noqa: BLE001 - the exporter raises many types; the culprit layer is what helps
        raise ExportError(_culprit(model, example) or f"the model does not export to ONNX: {_first_line(err)}") \
            from None
    proto = onnx.load(str(path))
    gemm_to_matmul(proto)
    onnx.save(proto, str(path))
    return proto


def _export(model: nn.Module, example: torch.Tensor, target: Path | io.BytesIO) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated; it needs no onnxscript, and is fast
        torch.onnx.export(model, (example,), target, dynamo=False,  # type: ignore[arg-type]  # a BytesIO works
                          opset_version=OPSET, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})


def _culprit(model: nn.Module, example: torch.Tensor) -> str | None:
    """Export each leaf layer alone on the input it saw; name the first that fails."""
    inputs: dict[str, torch.Tensor] = {}
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    def keep(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: object) -> None:  # returns None: the output stays
            inputs.setdefault(name, args[0])
        return hook

    hooks = [m.register_forward_hook(keep(name)) for name, m in leaves]
    try:
        with torch.no_grad():
            model(example)
    except Exception as err:  # noqa: BLE001 - the user's model, whatever it raises: named, not hidden
        return f"the model does not run on an example input ({type(err).__name__}: {_first_line(err)})"
    finally:
        for hook in hooks:
            hook.remove()
    for name, module in leaves:
        if name in inputs:
            try:
                _export(module, inputs[name], io.BytesIO())
            except Exception as err:  # noqa: BLE001
                return f"layer {name!r} ({type(module).__name__}) does not export to ONNX: {_first_line(err)}"
    return None


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
