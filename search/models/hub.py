"""Local Hugging Face model directories (``save_pretrained`` outputs): whether one is already a classifier for the
data's classes, and matching its outputs to them; and image classifiers (``AutoModelForImageClassification``) as a
family, ``hf_image``, that takes the user's raw pixels and does the model's own preprocessing (rescale, resize,
normalise, from its ``preprocessor_config.json``) inside, so it deploys as one graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from squeezer.search.errors import ConfigError
from squeezer.search.models import zoo
from squeezer.search.models.checks import check, on_meta

SEQUENCE_HEAD, IMAGE_HEAD = "ForSequenceClassification", "ForImageClassification"


def architectures(path: Path) -> list[str]:
    """The model classes a directory's ``config.json`` names ([] if it has none or cannot be read)."""
    try:
        return list(json.loads((path / "config.json").read_text()).get("architectures") or [])
    except (OSError, ValueError):
        return []


def fine_tuned_labels(path: Path, num_classes: int, head: str) -> list[str] | None:
    """The class names (in its output order) of a model directory that is already a ``...<head>`` classifier for
    ``num_classes`` classes; None for one that is not (its head is new and must be fine-tuned)."""
    config = json.loads((path / "config.json").read_text())
    labels = config.get("id2label") or {}
    if not any(a.endswith(head) for a in config.get("architectures") or []) or len(labels) != num_classes:
        return None
    return [str(labels.get(str(i), labels.get(i, f"LABEL_{i}"))) for i in range(num_classes)]


def align_classes(model: nn.Module, labels: list[str], classes: tuple[str, ...] | None, name: str) -> str:
    """Reorder a fine-tuned classifier's outputs (``model.model`` is the Hugging Face model) to the data's class
    order: its head's rows permuted in place, so a copy or an export keeps it. Returns how the classes were
    matched, for the log."""
    generic = all(label == f"LABEL_{i}" for i, label in enumerate(labels))
    if classes is None or generic:
        return f"its outputs taken as the data's classes in order ({labels} = {list(classes or range(len(labels)))})"
    mine, theirs = [c.lower() for c in classes], [label.lower() for label in labels]
    if sorted(mine) != sorted(theirs):
        raise ConfigError("teacher.arch.model", f"is fine-tuned for the classes {labels}, but the data's are "
                          f"{list(classes)} (rename them, or give teacher.epochs to fine-tune a new head)", name)
    order = [theirs.index(c) for c in mine]
    head = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == len(labels)][-1]
    with torch.no_grad():
        head.weight.copy_(head.weight[order])
        if head.bias is not None:
            head.bias.copy_(head.bias[order])
    config: Any = model.model.config
    config.id2label = dict(enumerate(classes))
    config.label2id = {c: i for i, c in enumerate(classes)}
    return f"its outputs matched to the data's classes by name ({labels} -> {list(classes)})"


class ImageClassifier(nn.Module):
    """A Hugging Face image classifier that takes raw pixels (N, C, H, W, 0-255) and prepares them as its image
    processor would: rescaled, grayscale repeated to RGB, resized (bilinear) to its size, normalised."""

    def __init__(self, model: nn.Module, size: tuple[int, int], rescale: float, mean: list[float],
                 std: list[float]) -> None:
        super().__init__()
        self.model: Any = model
        self.size, self.rescale = size, rescale
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.rescale
        if x.shape[1] == 1 and self.mean.shape[1] == 3:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.model(pixel_values=(x - self.mean) / self.std).logits


def hf_image(input_shape: tuple[int, ...], num_classes: int, *, model: str) -> ImageClassifier:
    """A local image classification model directory (config, weights, ``preprocessor_config.json``), with a head
    of ``num_classes`` (the directory's, if it has that many; else a new one, to fine-tune); on the meta device
    only its shapes, from its config."""
    zoo.ready()  # before transformers, which imports torchvision when installed
    from transformers import AutoConfig, AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    path = Path(model)
    check(len(input_shape) == 3, "model", "an image classifier needs image data (C, H, W)", model)
    if not (path / "config.json").is_file():
        raise ConfigError("model", "must be a local Hugging Face model directory (with config.json)", model)
    try:
        processor = json.loads((path / "preprocessor_config.json").read_text())
        config = AutoConfig.from_pretrained(path, num_labels=num_classes, local_files_only=True)
        if on_meta():
            loaded = AutoModelForImageClassification.from_config(config)
        else:
            loaded = AutoModelForImageClassification.from_pretrained(path, config=config, local_files_only=True,
                                                                     ignore_mismatched_sizes=True)
    except Exception as err:  # noqa: BLE001 - a user's files: no processor config, unreadable weights, ...
        raise ConfigError("model", f"could not be loaded as an image classifier ({type(err).__name__}: "
                          f"{(str(err).splitlines() or [''])[0]})", model) from None
    size = processor.get("size") or {}
    side = int(getattr(config, "image_size", 224))
    height, width = (size["height"], size["width"]) if "height" in size else (side, side)
    channels = int(getattr(config, "num_channels", 3))
    mean = processor.get("image_mean", [0.0] * channels) if processor.get("do_normalize", True) else [0.0] * channels
    std = processor.get("image_std", [1.0] * channels) if processor.get("do_normalize", True) else [1.0] * channels
    rescale = float(processor.get("rescale_factor", 1 / 255)) if processor.get("do_rescale", True) else 1.0
    check(input_shape[0] in (1, channels), "model", f"takes {channels} channels; the images have {input_shape[0]}",
          model)
    return ImageClassifier(loaded, (int(height), int(width)), rescale, list(mean), list(std))


__all__ = ["IMAGE_HEAD", "SEQUENCE_HEAD", "ImageClassifier", "align_classes", "architectures", "fine_tuned_labels",
           "hf_image"]
