"""Token-level distillation losses for causal language models, between the teacher's and the student's next-token
distributions over one support (the whole vocabulary when the teacher runs live; the teacher's top-k tokens when its
outputs are cached, both distributions renormalised over those k):

- ``forward_kl``: KL(p || q), mean-seeking (Hinton et al.; torchtune's default);
- ``reverse_kl``: KL(q || p), mode-seeking (MiniLLM, Gu et al. 2024);
- ``jsd``: the generalised Jensen–Shannon divergence of GKD (Agarwal et al. 2024),
  beta KL(p || m) + (1 - beta) KL(q || m) with m = beta p + (1 - beta) q;
- ``skew_kl``: KL(p || alpha p + (1 - alpha) q), DistiLLM's skew KL (Ko et al. 2024).

Each takes log-probabilities ``[..., support]`` and gives one value per token; ``masked_mean`` averages the tokens
that count (the response tokens of prompt/response pairs)."""

from __future__ import annotations

import math
from typing import Callable

import torch

LOSSES = ("forward_kl", "reverse_kl", "jsd", "skew_kl")


def forward_kl(teacher: torch.Tensor, student: torch.Tensor, beta: float = 0.5, alpha: float = 0.1) -> torch.Tensor:
    return (teacher.exp() * (teacher - student)).sum(-1)


def reverse_kl(teacher: torch.Tensor, student: torch.Tensor, beta: float = 0.5, alpha: float = 0.1) -> torch.Tensor:
    return (student.exp() * (student - teacher)).sum(-1)


def jsd(teacher: torch.Tensor, student: torch.Tensor, beta: float = 0.5, alpha: float = 0.1) -> torch.Tensor:
    """Generalised JSD(beta); beta near 0 behaves as forward KL, near 1 as reverse KL (scaled)."""
    beta = min(max(beta, 1e-4), 1 - 1e-4)
    mixture = torch.logsumexp(torch.stack([teacher + math.log(beta), student + math.log(1 - beta)]), dim=0)
    return beta * (teacher.exp() * (teacher - mixture)).sum(-1) + \
        (1 - beta) * (student.exp() * (student - mixture)).sum(-1)


def skew_kl(teacher: torch.Tensor, student: torch.Tensor, beta: float = 0.5, alpha: float = 0.1) -> torch.Tensor:
    """Skew KL(alpha): the teacher against a mixture that keeps alpha of the teacher; alpha = 0 is forward KL."""
    alpha = min(max(alpha, 0.0), 1 - 1e-4)
    if alpha == 0:
        return forward_kl(teacher, student)
    mixture = torch.logsumexp(torch.stack([teacher + math.log(alpha), student + math.log(1 - alpha)]), dim=0)
    return (teacher.exp() * (teacher - mixture)).sum(-1)


DIVERGENCES: dict[str, Callable[..., torch.Tensor]] = {
    "forward_kl": forward_kl, "reverse_kl": reverse_kl, "jsd": jsd, "skew_kl": skew_kl}


def on_support(student_logits: torch.Tensor, teacher_logits: torch.Tensor, indices: torch.Tensor | None,
               temperature: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's and the student's log-probabilities at ``temperature`` (a number, or one per token
    ``[..., 1]``) over one support: the whole vocabulary (``indices`` None), or the teacher's top-k tokens
    (``indices [..., k]``, ``teacher_logits`` their logits), both renormalised over them."""
    student = student_logits.float() / temperature
    if indices is not None:
        student = student.gather(-1, indices.long())
    teacher = teacher_logits.float() / temperature
    return teacher.log_softmax(-1), student.log_softmax(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of per-token ``values`` over the tokens ``mask`` keeps (all, when None)."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of each position's prediction of the next token, averaged over the predicted tokens ``mask``
    keeps (``mask`` marks the tokens that count, aligned with ``ids``)."""
    per_token = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(),
                                                  reduction="none").view(ids.shape[0], -1)
    return masked_mean(per_token, None if mask is None else mask[:, 1:])


__all__ = ["DIVERGENCES", "LOSSES", "forward_kl", "jsd", "masked_mean", "next_token_loss", "on_support",
           "reverse_kl", "skew_kl"]
