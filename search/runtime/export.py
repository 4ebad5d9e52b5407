"""A compressed model as users take it away: a torch state dict plus the architecture to rebuild it (the student's
settings, then every layer whose shape or kind compression changed), and the ONNX file the trial measured. Reloaded,
either reproduces the trial's predictions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from squeezer.compressors.quantize import Plan, Quantized, float_model
from squeezer.search import models
from squeezer.search.data.inputs import InputSpec, Standardize
from squeezer.search.runtime.eager import packed_state, realise, unpacked_state

ARCHITECTURE, WEIGHTS = "architecture.json", "student.pt"
#: Layers whose construction arguments the architecture records (their shapes are what pruning and low rank change).
LAYERS: dict[type[nn.Module], tuple[str, ...]] = {
    nn.Linear: ("in_features", "out_features"),
    nn.Conv1d: ("in_channels", "out_channels", "kernel_size", "stride", "padding", "groups"),
    nn.Conv2d: ("in_channels", "out_channels", "kernel_size", "stride", "padding", "groups"),
    nn.BatchNorm1d: ("num_features",), nn.BatchNorm2d: ("num_features",),
    nn.LayerNorm: ("normalized_shape",), nn.Embedding: ("num_embeddings", "embedding_dim"),
    nn.Sequential: (),
}
ATTRIBUTES = ("num_attention_heads", "all_head_size")  # a pruned transformer attention's head count


def save(model: nn.Module, arch: dict[str, Any], out: Path, onnx_file: Path | None = None,
         inputs: dict[str, Any] | None = None) -> None:
    """Write ``model`` (maybe a ``Quantized`` plan) to ``out``: ``student.pt`` (weights; mostly-zero tensors packed),
    ``architecture.json``, and a copy of ``onnx_file`` when given. ``inputs``: the input shape, class count and
    (for text) tokens the model was built for, so that ``load`` needs nothing else."""
    out.mkdir(parents=True, exist_ok=True)
    plan = model.plan if isinstance(model, Quantized) else None
    inner = float_model(model)
    state = packed_state(inner.state_dict())
    if plan is not None and plan.int8_mode == "static":
        state["__calibration__"] = model.calibration  # static int8 is calibrated again on the same samples
    torch.save(state, out / WEIGHTS)
    description = {"arch": arch, "inputs": inputs or {}, "layers": layers(inner),
                   "plan": None if plan is None else vars(plan)}
    (out / ARCHITECTURE).write_text(json.dumps(description, indent=2, default=list))
    if onnx_file is not None:
        shutil.copyfile(onnx_file, out / "model.onnx")


def load(out: Path, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None, tokens: Any = None,
         realised: bool = True, template: nn.Module | None = None) -> nn.Module:
    """Rebuild the model saved in ``out``. With ``realised``, as deployed: its quantization realised as the torch
    runtime does (the ONNX file runs in ONNX Runtime as it is), taking the user's raw input (the preprocessing
    training used is put in front). Without, the trained model (maybe a ``Quantized`` plan) on standardised input,
    as ``spec(out)`` describes. Shapes and tokens default to those saved with it. ``template``: for a student that
    is a copy of a teacher passed as a Python object (family ``given``), that object (its code is yours)."""
    description = json.loads((out / ARCHITECTURE).read_text())
    saved = description.get("inputs", {})
    standardize = Standardize.from_description((saved.get("spec") or {}).get("preprocessing"))
    input_shape = tuple(saved["input_shape"]) if input_shape is None else input_shape
    num_classes = saved["num_classes"] if num_classes is None else num_classes
    if tokens is None and saved.get("tokens"):
        from squeezer.search.data import Tokens

        tokens = Tokens(**saved["tokens"])
    state = torch.load(out / WEIGHTS, weights_only=True)
    calibration = state.pop("__calibration__", None)
    # every weight comes from the file, so a student first copied from its teacher is built plain
    arch = {k: v for k, v in description["arch"].items() if k != "init"}
    state = unpacked_state(state)
    with torch.device("meta"):  # the built weights are all replaced; nothing is allocated twice
        model = models.build(arch, input_shape, num_classes, tokens=tokens, template=template)
    reshape(model, description["layers"])
    model.load_state_dict(state, assign=True)
    if any(b.is_meta for b in model.buffers()):
        # buffers outside the state dict (a transformer's position ids) would stay uninitialised: build for real
        model = models.build(arch, input_shape, num_classes, tokens=tokens, template=template)
        reshape(model, description["layers"])
        model.load_state_dict(state)
    model.eval()
    if description["plan"] is not None:
        model = Quantized(model, Plan(**description["plan"]), calibration)
    return _raw_input(realise(model), standardize) if realised else model


def _raw_input(model: nn.Module, standardize: Standardize | None) -> nn.Module:
    """The model as deployed: taking the user's raw input, standardised first where training standardised it."""
    from squeezer.search.runtime.preprocess import Standardized

    return model if standardize is None else Standardized(standardize, model).eval()


def spec(out: Path) -> InputSpec | None:
    """What the model saved in ``out`` takes (shape, type, classes, preprocessing); None for an older export."""
    saved = json.loads((out / ARCHITECTURE).read_text()).get("inputs", {}).get("spec")
    if not saved:
        return None
    return InputSpec(tuple(saved["input_shape"][1:]), saved["dtype"], tuple(saved["classes"]),
                     Standardize.from_description(saved["preprocessing"]))


def reload(out: Path, runtime: str, splits: Any, template: nn.Module | None = None) -> Any:
    """The deployed model a trial wrote to ``out`` (as downloaded from its MLflow run), runnable again: its ONNX
    file in ONNX Runtime, or its export rebuilt in torch. ``splits``: the study's data (shapes, tokens)."""
    from squeezer.search.runtime.eager import EagerModel
    from squeezer.search.runtime.ort import OnnxModel

    if runtime == "onnxruntime":
        return OnnxModel(out / "model.onnx")
    model = load(out, splits.input_shape, splits.num_classes, tokens=splits.tokens, template=template)
    return EagerModel(model, out / "model.pt")


def layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Every recorded layer's kind and construction arguments, by its name in the module tree."""
    found = {}
    for name, module in model.named_modules():
        spec: dict[str, Any] = {}
        if type(module) is nn.ModuleList:  # an encoder's layers: some may have been dropped
            spec = {"kind": "ModuleList", "length": len(module)}
        elif type(module) in LAYERS:
            spec = {"kind": type(module).__name__, **{a: getattr(module, a) for a in LAYERS[type(module)]}}
            if hasattr(module, "bias"):
                spec["bias"] = module.bias is not None
        spec |= {a: getattr(module, a) for a in ATTRIBUTES if isinstance(getattr(module, a, None), int)}
        if name and spec:
            found[name] = spec
    return found


def reshape(model: nn.Module, recorded: dict[str, dict[str, Any]]) -> None:
    """Make ``model``'s layers those ``recorded`` (parents before children, as ``named_modules`` lists them)."""
    kinds = {cls.__name__: cls for cls in LAYERS}
    for name, spec in recorded.items():
        spec = dict(spec)
        attributes = {a: spec.pop(a) for a in ATTRIBUTES if a in spec}
        kind = spec.pop("kind", None)
        if kind == "ModuleList":
            current = _get(model, name)
            if isinstance(current, nn.ModuleList) and len(current) > spec["length"]:
                _set(model, name, nn.ModuleList(list(current)[: spec["length"]]))  # the layers kept, renumbered
        elif kind is not None:
            current = _get(model, name)
            if not (type(current).__name__ == kind and layers_equal(current, kind, spec)):
                _set(model, name, _construct(kinds[kind], spec))
        for attribute, value in attributes.items():
            setattr(_get(model, name), attribute, value)


def layers_equal(module: nn.Module | None, kind: str, spec: dict[str, Any]) -> bool:
    if module is None:
        return False
    if kind == "Sequential":
        return True  # its children are checked one by one
    has_bias = getattr(module, "bias", None) is not None  # layers without one (Embedding) record none
    return all(_plain(getattr(module, k)) == _plain(v) for k, v in spec.items() if k != "bias") and \
        has_bias == spec.get("bias", has_bias)


def _construct(cls: type[nn.Module], spec: dict[str, Any]) -> nn.Module:
    if cls is nn.Sequential:
        return nn.Sequential()
    if cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.Embedding, nn.LayerNorm):
        spec = {k: v for k, v in spec.items() if k != "bias"}
    if cls is nn.LayerNorm:
        spec["normalized_shape"] = tuple(spec["normalized_shape"])
    return cls(**spec)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def _get(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    (model.get_submodule(parent) if parent else model).add_module(child, module)
