"""Intermediate layers for feature and attention distillation: where to tap, how to pair, how to project."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from squeezer.compressors.base import InvalidConfig

#: Module types whose output ends a block: a hidden layer's activation, or a CNN block's pooling.
_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_BLOCK_ENDS = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, *_POOLS)


def hint_layers(model: nn.Module) -> list[str]:
    """Names of the modules whose outputs are block outputs, in forward order (an activation directly followed
    by pooling yields to the pooling). The classifier's output is not a hint."""
    children = list(model.named_children())
    names = []
    for i, (name, module) in enumerate(children):
        followed_by_pool = i + 1 < len(children) and isinstance(children[i + 1][1], _POOLS)
        if isinstance(module, _POOLS) or (isinstance(module, _BLOCK_ENDS) and not followed_by_pool):
            names.append(name)
    return names


@torch.no_grad()
def output_shapes(model: nn.Module, example: torch.Tensor, layers: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of each named layer, from one forward pass on ``example`` (an input batch; works on
    the meta device)."""
    device = next(model.parameters()).device
    training = model.training
    model.eval()  # a training-mode pass would move BatchNorm's running statistics
    with capture(model, layers) as found:
        model(example[:1].to(device))
    model.train(training)
    return {name: tuple(found[name].shape[1:]) for name in layers}


@contextmanager
def capture(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Inside the block, every forward pass stores each named layer's output in the yielded dict."""
    found: dict[str, torch.Tensor] = {}
    hooks = [model.get_submodule(name).register_forward_hook(_store(found, name)) for name in layers]
    try:
        yield found
    finally:
        for hook in hooks:
            hook.remove()


def _store(found: dict[str, torch.Tensor], name: str):  # noqa: ANN202 - a forward hook
    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        found[name] = output
    return hook


def pair_layers(student: nn.Module, teacher: nn.Module, declared: str | Sequence[str], setting: str,
                candidates_s: Sequence[str] | None = None,
                candidates_t: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(student layer, teacher layer) pairs: declared as ``"s:t"`` strings, or ``auto``: every student hint layer
    paired with the teacher's hint layer at the same relative depth."""
    cs = list(hint_layers(student) if candidates_s is None else candidates_s)
    ct = list(hint_layers(teacher) if candidates_t is None else candidates_t)
    if declared == "auto":
        if not cs or not ct:
            return []
        return [(s, ct[max(0, round((i + 1) * len(ct) / len(cs)) - 1)]) for i, s in enumerate(cs)]
    pairs = [tuple(item.split(":", 1)) for item in declared]
    for s, t in pairs:
        for name, model, role in ((s, student, "student"), (t, teacher, "teacher")):
            if not _has(model, name):
                raise InvalidConfig(setting, f"layer {name!r} does not exist in the {role}; its hint layers are "
                                    f"{hint_layers(model)}", list(declared))
    return [(s, t) for s, t in pairs]


def _has(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


class Projection(nn.Module):
    """A learned map from a student feature to its teacher feature's shape (FitNets' regressor).

    Maps (C, H, W) → (C', H', W') with a 1×1 convolution (the larger map is average-pooled to the smaller size);
    when either side is a vector, a spatial side is global-average-pooled to its channels and a Linear maps it.
    """

    def __init__(self, student_shape: Sequence[int], teacher_shape: Sequence[int]) -> None:
        super().__init__()
        self.spatial = len(student_shape) == 3 and len(teacher_shape) == 3
        self.size = ((min(student_shape[1], teacher_shape[1]), min(student_shape[2], teacher_shape[2]))
                     if self.spatial else (0, 0))
        self.map: nn.Module = (nn.Conv2d(student_shape[0], teacher_shape[0], 1) if self.spatial
                               else nn.Linear(student_shape[0], teacher_shape[0]))

    def forward(self, student: torch.Tensor) -> torch.Tensor:
        if self.spatial:
            return pool_to(self.map(student), self.size)
        return self.map(student.mean((2, 3)) if student.dim() == 4 else student)

    def target(self, teacher: torch.Tensor) -> torch.Tensor:
        """The teacher feature brought to the projection's output shape."""
        if self.spatial:
            return pool_to(teacher, self.size)
        return teacher.mean((2, 3)) if teacher.dim() == 4 else teacher


def pool_to(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average-pool the last two dimensions to ``size``; a no-op (and free: the identity pooling is not, on CPU)
    when they already have it."""
    if tuple(maps.shape[-2:]) == size:
        return maps
    return nn.functional.adaptive_avg_pool2d(maps, size)

