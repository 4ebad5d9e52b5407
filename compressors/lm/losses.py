"""Token-level distillation losses for causal language models, between the teacher's and the student's next-token
distributions over one support: the whole vocabulary when the teacher runs live; when its outputs are cached, the
teacher's top-k tokens and one more bin for all the others (the teacher's mass there kept with its top-k; the
student's is its full softmax's), so that a student cannot hide probability outside the teacher's top k:

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
               temperature: torch.Tensor | float,
               rest: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's and the student's log-probabilities at ``temperature`` (a number, or one per token
    ``[..., 1]``) over one support: the whole vocabulary (``indices`` None); or the teacher's top-k tokens
    (``indices [..., k]``, ``teacher_logits`` their logits) and a last bin for every other token — the teacher's
    ``rest`` ``[...]``, its probability outside its top k (at T = 1: at another temperature the top k are tempered
    among themselves and the rest kept), the student's from its full softmax."""
    student = (student_logits.float() / temperature).log_softmax(-1)
    teacher = teacher_logits.float() / temperature
    if indices is None:
        return teacher.log_softmax(-1), student
    top = student.gather(-1, indices.long())
    covered = torch.logsumexp(top, dim=-1, keepdim=True).clamp(max=-1e-6)
    student_rest = torch.log(-torch.expm1(covered))  # log(1 - the student's mass on the teacher's top k)
    left = (rest if rest is not None else torch.zeros(teacher.shape[:-1], device=teacher.device)).float()
    left = left.clamp(1e-6, 1 - 1e-6).unsqueeze(-1)
    teacher = teacher.log_softmax(-1) + torch.log1p(-left)
    return torch.cat([teacher, left.log()], -1), torch.cat([top, student_rest], -1)


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
