"""Distillation between transformer encoders (TinyBERT / MiniLM style): hidden states through learned projections,
attention distributions, and the embedding layer's output, over uniformly mapped layers.

Models take part through ``encode(ids) -> Encoded`` (``squeezer.search.models.text.TextClassifier`` has it). The
teacher's hidden states and head-averaged attentions come from ``TeacherOutputs``: computed for every layer in one
pass over the training texts, then cached (float16, padded to the full length; the student's batch is cut to its
longest text, and so are they).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import torch
from torch import nn

from squeezer.compressors.base import InvalidConfig


@dataclass
class Encoded:
    """One forward pass: logits, hidden states by layer number (0: the embeddings; (B, L, H)), attention
    distributions averaged over the heads by layer number ((B, L, L); empty when not asked for), the token mask."""

    logits: torch.Tensor
    hidden: dict[int, torch.Tensor]
    attentions: dict[int, torch.Tensor]
    mask: torch.Tensor


class Encoder(Protocol):
    def encode(self, ids: torch.Tensor, attentions: bool = False) -> Encoded: ...


def is_encoder(model: nn.Module) -> bool:
    return callable(getattr(model, "encode", None)) and getattr(model, "layers", 0) > 0


def layer_map(student_layers: int, teacher_layers: int, declared: str | Sequence[str] = "auto",
              setting: str = "feature_layers") -> list[tuple[int, int]]:
    """(student, teacher) layer numbers, 1-based (0 is the embeddings): ``auto`` maps student layer i to teacher
    layer i·T/S (so the last layers meet); or declared ``"s:t"`` strings."""
    if declared == "auto":
        return [(i, i * teacher_layers // student_layers) for i in range(1, student_layers + 1)]
    pairs = []
    for item in declared:
        s, t = item.split(":", 1)
        if not (s.isdigit() and t.isdigit() and 0 <= int(s) <= student_layers and 0 <= int(t) <= teacher_layers):
            raise InvalidConfig(setting, f"transformer layers are numbers: student 0..{student_layers}, teacher "
                                f"0..{teacher_layers} (0: the embeddings)", list(declared))
        pairs.append((int(s), int(t)))
    return pairs


def hidden_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden units of the real (unpadded) tokens: Σ_tokens ‖s − t‖² / (tokens · H)."""
    keep = mask.unsqueeze(-1).to(student.dtype)
    return ((student - teacher) ** 2 * keep).sum() / (keep.sum() * student.shape[-1]).clamp(min=1)


def attention_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) between head-averaged attention distributions (B, L, L), averaged over the real query
    tokens. Averaging the heads lets a student with fewer heads learn where its teacher looks (MiniLM transfers per
    head and needs equal head counts)."""
    p_t = teacher.clamp(min=1e-12)
    p_s = student.clamp(min=1e-12)
    per_query = (p_t * (p_t.log() - p_s.log())).sum(-1)
    keep = mask.to(per_query.dtype)
    return (per_query * keep).sum() / keep.sum().clamp(min=1)


class TransformerHints(nn.Module):
    """The learned projections (student hidden size → teacher's) and the three losses for one student–teacher
    pair of encoders."""

    def __init__(self, student: Any, teacher: Any, declared: str | Sequence[str] = "auto",
                 attention_declared: str | Sequence[str] = "auto") -> None:
        super().__init__()
        s, t = student.layers, teacher.layers
        self.pairs = layer_map(s, t, declared)
        self.attention_pairs = [(a, b) for a, b in layer_map(s, t, attention_declared, "attention_layers")
                                if a > 0 and b > 0]
        width_s, width_t = student.hidden_size, teacher.hidden_size
        self.projections = nn.ModuleDict({str(i): nn.Linear(width_s, width_t) for i in
                                          {0, *(a for a, _ in self.pairs)}})

    def hidden(self, s: Encoded, t: Encoded) -> torch.Tensor:
        return _mean([hidden_loss(self.projections[str(a)](s.hidden[a]), t.hidden[b], s.mask)
                      for a, b in self.pairs])

    def embedding(self, s: Encoded, t: Encoded) -> torch.Tensor:
        return hidden_loss(self.projections["0"](s.hidden[0]), t.hidden[0], s.mask)

    def attention(self, s: Encoded, t: Encoded) -> torch.Tensor:
        return _mean([attention_loss(s.attentions[a], t.attentions[b], s.mask) for a, b in self.attention_pairs])

    def teacher_layers(self) -> tuple[list[int], list[int]]:
        """The teacher's hidden-state and attention layer numbers these losses read."""
        return sorted({0, *(b for _, b in self.pairs)}), sorted({b for _, b in self.attention_pairs})


def _mean(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).mean()
