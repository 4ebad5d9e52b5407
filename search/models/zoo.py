"""torchvision, imported so that its models work even where its C++ operators do not load.

A torchvision built for another torch (its CUDA build beside a CPU torch, say) cannot load its operators, yet on
import it registers fake kernels for two of them, and that import fails: torchvision's own, and transformers' too
(transformers imports torchvision whenever it is installed). Squeezer uses only torchvision's classification models,
which are plain Python, so ``ready()`` declares the two operators (without kernels) and imports it again; the models
work, ``torchvision.ops`` (detection's NMS, RoI pooling) does not, and a warning says so where a torchvision model is
built. The default install has no torchvision (see pyproject.toml's ``vision`` extra)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import torch

_DECLARED: list[torch.library.Library] = []  # torch forgets a library's definitions when its object goes


def ready() -> ModuleType | None:
    """torchvision, imported (None where it is not installed). Called before transformers is imported."""
    if importlib.util.find_spec("torchvision") is None:
        return None
    try:
        import torchvision
        return torchvision
    except RuntimeError as err:
        if "operator torchvision::" not in str(err):
            raise
    _declare_operators()
    import torchvision
    return torchvision


def _declare_operators() -> None:
    for module in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        del sys.modules[module]  # what the failed import left
    library = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _DECLARED.append(library)


def operators_missing() -> bool:
    """Whether ``ready()`` had to declare torchvision's operators (said where a torchvision model is used: a study
    that only needs transformers has nothing to act on)."""
    return bool(_DECLARED)


__all__ = ["operators_missing", "ready"]
