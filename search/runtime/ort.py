"""The ONNX Runtime runtime: the model is exported to ONNX, quantized with ONNX Runtime's tools, weights that are
mostly zeros stored packed; it runs in an ``InferenceSession`` on the CPU."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn

from squeezer.compressors.quantize import Quantized, float_model, weight_layers
from squeezer.compressors.training import inference_batch
from squeezer.search.data.inputs import InputSpec
from squeezer.search.runtime.onnx_export import INPUT, export_onnx
from squeezer.search.runtime.onnx_graph import pack_sparse
from squeezer.search.runtime.onnx_quantize import quantize_onnx
from squeezer.search.runtime.preprocess import prepend_to_onnx

SUPPORTED_HALF = ("fp16",)  # ONNX Runtime's CPU kernels have no bf16
CUDA = "CUDAExecutionProvider"


def runs_on_gpu() -> bool:
    """Whether the installed ONNX Runtime has its CUDA provider (the onnxruntime-gpu package)."""
    import onnxruntime as ort

    return CUDA in ort.get_available_providers()


class OnnxModel:
    """An ONNX file and a session on it: on the CPU with ``threads`` intra-op threads, or on a CUDA GPU (``cuda``,
    ``cuda:N``; nodes without a CUDA kernel fall back to the CPU). A run returns when its outputs are back in host
    memory: its time is synchronised."""

    def __init__(self, path: Path, threads: int = 1, device: str = "cpu") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        self.path = path
        gpu = torch.device(device)
        providers: list = ["CPUExecutionProvider"]
        if gpu.type == "cuda":
            providers.insert(0, (CUDA, {"device_id": gpu.index or 0}))
        self.session = ort.InferenceSession(str(path), options, providers=providers)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {INPUT: x.numpy()})[0]).float()

    def predict(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        return torch.cat([self(chunk) for chunk in x.split(batch_size or inference_batch(x))])


def deploy(model: nn.Module, path: Path, example: torch.Tensor, threads: int = 1,
           spec: InputSpec | None = None, device: str = "cpu") -> OnnxModel:
    """Export ``model`` (realising its quantization plan, if any) to ``path`` and open a session on it; with
    ``spec``, the graph standardises its raw input first and records what it takes in its metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    inner = float_model(model)
    export_onnx(inner, example, path)
    if isinstance(model, Quantized):
        if model.plan.bits == 16 and model.plan.half not in SUPPORTED_HALF:
            raise ValueError(f"quantize.half: ONNX Runtime on CPU runs {list(SUPPORTED_HALF)}, not "
                             f"{model.plan.half!r}; bf16 needs measure.runtime: torch")
        quantize_onnx(path, model.plan, model.calibration, weight_layers(inner))
    proto = onnx.load(str(path))
    packed = pack_sparse(proto)
    if spec is not None:
        prepend_to_onnx(proto, spec)
    if packed or spec is not None:
        onnx.save(proto, str(path))
    return OnnxModel(path, threads, device)
