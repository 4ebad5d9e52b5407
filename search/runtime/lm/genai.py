"""The ONNX Runtime GenAI runtime: the student's ``save_pretrained`` folder turned by ``onnxruntime_genai``'s model
builder into ``model.onnx`` (+ its external weights), ``genai_config.json`` and the tokenizer — what
``onnxruntime_genai.Model(folder)`` loads and generates from. fp32 on the CPU; int8 / int4 weights as ``MatMulNBits``
(one scale per ``block_size`` = ``group_size`` input channels; the CPU's default accuracy level); bf16 on a CUDA GPU.

Everything is measured through the runtime's own generator: perplexity from the logits of every position of a block
appended as a prompt (the quantization error is in the number), generation greedy with its KV cache."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from squeezer.compressors.lm.quantize import Precision
from squeezer.search.runtime.lm import GENAI, HF_FOLDER, LM_RUNTIMES
from squeezer.search.runtime.lm import hf

CONFIG = "genai_config.json"
PRECISIONS = {32: "fp32", 16: "bf16", 8: "int8", 4: "int4"}  # lm_quantize.bits -> the builder's precision


class NotExportable(ValueError):
    """The model builder cannot export this architecture (or precision on this execution provider)."""


def runs_on_gpu() -> bool:
    """Whether the installed onnxruntime-genai runs on CUDA (the onnxruntime-genai-cuda package)."""
    import onnxruntime_genai as og

    return bool(getattr(og, "is_cuda_available", lambda: False)())


def provider(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def build(hf_folder: Path, out: Path, precision: Precision, threads: int = 1, device: str = "cpu") -> Path:
    """The model builder's output for ``hf_folder`` (a save_pretrained folder) at ``precision``, written to ``out``;
    its sessions run ``threads`` intra-op threads. ``NotExportable`` where the builder refuses."""
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    name, ep = PRECISIONS[precision.bits], provider(device)
    if precision.bits == 16 and ep == "cpu":
        raise NotExportable("onnxruntime-genai runs 16-bit weights on a CUDA GPU only (measure.device: cuda)")
    config = json.loads((hf_folder / "config.json").read_text())
    head = config.get("head_dim") or config.get("hidden_size", 0) // max(1, config.get("num_attention_heads", 1))
    if head % 16:
        raise NotExportable(f"its attention (GroupQueryAttention) needs a head size that is a multiple of 16; this "
                            f"model's is {head}")
    options = [f"block_size={precision.group_size}"] if precision.bits in (8, 4) else []
    out.mkdir(parents=True, exist_ok=True)
    chatter = io.StringIO()  # the builder prints every node and a progress bar per tensor
    loggers = [logging.getLogger(n) for n in ("onnxruntime", "onnxruntime.quantization",
                                               "onnxruntime.quantization.matmul_nbits_quantizer")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:  # its quantizer logs each node, and an ERROR where it leaves int8 embeddings whole
            lg.setLevel(logging.CRITICAL)  # a build that fails raises
        with tempfile.TemporaryDirectory(prefix="squeezer-genai-") as cache, \
                contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            extra = parse_extra_options("", str(hf_folder), str(out), name, ep, cache, options)
            create_model("", str(hf_folder), str(out), name, ep, cache, **extra)
    except NotImplementedError as err:
        raise NotExportable(str(err).strip().splitlines()[0]) from None
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    path = out / CONFIG
    config = json.loads(path.read_text())
    session = config["model"]["decoder"].setdefault("session_options", {})
    session.update({"intra_op_num_threads": threads, "inter_op_num_threads": 1})
    path.write_text(json.dumps(config, indent=4) + "\n")
    return out


class GenaiLm:
    """A folder the model builder wrote, loaded by ``onnxruntime_genai`` on the CPU or a CUDA GPU."""

    def __init__(self, folder: Path, threads: int = 1, device: str = "cpu") -> None:
        import onnxruntime_genai as og

        self.folder, self.threads, self.device = folder, threads, device
        config = og.Config(str(folder))
        if provider(device) == "cuda":
            config.clear_providers()
            config.append_provider("cuda")
        self.model = og.Model(config)

    def size_bytes(self) -> int:
        """The bytes of the model files: the ONNX graph and its external weights (not the tokenizer or config)."""
        return sum(p.stat().st_size for p in self.folder.iterdir()
                   if p.is_file() and (p.suffix == ".onnx" or p.name.endswith((".onnx.data", ".onnx_data"))))

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Every position's logits, as the generator computes them for a prompt (its prefill)."""
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=ids.shape[1] + 1, batch_size=len(ids))
        generator = og.Generator(self.model, params)
        generator.append_tokens(ids.numpy().astype(np.int32))
        return torch.from_numpy(np.asarray(generator.get_output("logits"), dtype=np.float32))

    def generate(self, prompts: torch.Tensor, new_tokens: int) -> tuple[float, float]:
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        total = prompts.shape[1] + new_tokens
        params.set_search_options(max_length=total, min_length=total, do_sample=False, batch_size=len(prompts))
        generator = og.Generator(self.model, params)
        start = time.perf_counter()
        generator.append_tokens(prompts.numpy().astype(np.int32))  # the prefill
        generator.generate_next_token()
        first = time.perf_counter()
        for _ in range(new_tokens - 1):
            generator.generate_next_token()  # one step of the decoder with the cache, and the greedy pick
        end = time.perf_counter()
        return (first - start) * 1e3, (end - first) * 1e3 / max(1, new_tokens - 1)


def deploy(model: nn.Module, tokenizer: Any, workdir: Path, threads: int = 1, device: str = "cpu",
           summary: str = "") -> GenaiLm:
    """The student's save_pretrained folder (full precision: the builder quantizes) in ``workdir/model``, and the
    builder's folder at the model's ``Precision`` in ``workdir/onnxruntime-genai``."""
    precision = Precision.of(model)
    source = hf.save(_float(model), tokenizer, workdir / HF_FOLDER, summary=summary)
    out = workdir / LM_RUNTIMES[GENAI].folder
    if out.exists():
        shutil.rmtree(out)
    build(source, out, precision, threads, device)
    (out / "README.md").write_text(README.format(summary=summary or "A causal language model.",
                                                 precision=PRECISIONS[precision.bits],
                                                 group=f", blocks of {precision.group_size}"
                                                 if precision.bits in (8, 4) else "", threads=threads))
    return GenaiLm(out, threads, device)


def load(folder: Path, threads: int = 1, device: str = "cpu") -> GenaiLm:
    return GenaiLm(folder, threads, device)


def _float(model: nn.Module) -> nn.Module:
    """The model's weights in float32 (the builder reads them and casts or quantizes as asked)."""
    return model if next(model.parameters()).dtype == torch.float32 else model.float()


README = """# A causal language model compressed by Squeezer, for ONNX Runtime GenAI

{summary}

Weights: {precision}{group}. Built by `onnxruntime_genai`'s model builder; its sessions run {threads} intra-op
thread(s), as it was measured (`genai_config.json`, `session_options`: change them for your machine).

```python
import onnxruntime_genai as og

model = og.Model("onnxruntime-genai")
tokenizer = og.Tokenizer(model)
params = og.GeneratorParams(model)
params.set_search_options(max_length=64, do_sample=False)
generator = og.Generator(model, params)
generator.append_tokens(tokenizer.encode("Once upon a time"))
while not generator.is_done():
    generator.generate_next_token()
print(tokenizer.decode(generator.get_sequence(0)))
```
"""

__all__ = ["GenaiLm", "NotExportable", "build", "deploy", "load", "runs_on_gpu"]
