"""A causal language model student as users take it away: a ``save_pretrained`` folder (config, safetensors,
tokenizer, README) that ``AutoModelForCausalLM.from_pretrained`` loads and ``generate``s from. A weight-only int8 /
int4 student's packed weights are plain safetensors too, loaded by ``load`` (its README says how). ``size_bytes`` of
a language model is ``weights_bytes``: the safetensors files' bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from squeezer.compressors.lm import weight_only
from squeezer.search.models.causal import quiet

README = """# A causal language model compressed by Squeezer

{summary}

```python
{loading}
prompt = tokenizer("{prompt}", return_tensors="pt")
print(tokenizer.decode(model.generate(**prompt, max_new_tokens=40)[0], skip_special_tokens=True))
```
"""
PLAIN = """from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("{folder}"{dtype})
tokenizer = AutoTokenizer.from_pretrained("{folder}")"""
PACKED = """# weight-only int{bits} (packed integers and float16 scales in model.safetensors): Squeezer's loader
from transformers import AutoTokenizer
from squeezer.compressors.lm.weight_only import load
model = load(Path("{folder}"))
tokenizer = AutoTokenizer.from_pretrained("{folder}")"""


def save(model: nn.Module, tokenizer: Any, folder: Path, summary: str = "") -> Path:
    """Write ``model`` and ``tokenizer`` to ``folder`` as ``save_pretrained`` does (packed weights for int8/int4),
    with a README that says how to load it."""
    quiet()
    folder.mkdir(parents=True, exist_ok=True)
    if weight_only.is_quantized(model):
        weight_only.save(model, folder)
        bits = model.config.squeezer_quantization["bits"]
        loading = "from pathlib import Path\n" + PACKED.format(bits=bits, folder=folder.name)
    else:
        model.save_pretrained(folder)
        half = next(model.parameters()).dtype == torch.bfloat16
        loading = PLAIN.format(folder=folder.name, dtype=", dtype=torch.bfloat16" if half else "")
        if half:
            loading = "import torch\n" + loading
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(README.format(summary=summary or "Weights, config and tokenizer.",
                                                    loading=loading, prompt="Once upon a time"))
    return folder


def load(folder: Path) -> nn.Module:
    """The model ``save`` wrote, in eval mode on the CPU."""
    quiet()
    if (folder / weight_only.QUANTIZATION_FILE).is_file():
        return weight_only.load(folder)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype="auto").eval()


def weights_bytes(folder: Path) -> int:
    """The bytes of the deployed weights: every safetensors file in ``folder``."""
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


__all__ = ["load", "save", "weights_bytes"]
