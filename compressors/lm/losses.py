"""Token-level distillation losses for causal language models, between the teacher's and the student's next-token
distributions over one support: the whole vocabulary when the teacher runs live; when its outputs are cached, the
teacher's top-k tokens and one more bin for all the others (the teacher's mass there at any temperature from what its
cache keeps, ``rest_statistics``; the student's is its full softmax's), so that a student cannot hide probability
outside the teacher's top k:

- ``forward_kl``: KL(p || q), mean-seeking (Hinton et al.; torchtune's default);
- ``reverse_kl``: KL(q || p), mode-seeking (MiniLLM, Gu et al. 2024);
- ``jsd``: the generalised Jensen–Shannon divergence of GKD (Agarwal et al. 2024),
  beta KL(p || m) + (1 - beta) KL(q || m) with m = beta p + (1 - beta) q; forward KL at beta = 0, reverse KL at 1;
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
    """Generalised JSD(beta); at beta = 0 it is forward KL, at 1 reverse KL (as TRL's GKD takes the ends)."""
    if beta <= 0:
        return forward_kl(teacher, student)
    if beta >= 1:
        return reverse_kl(teacher, student)
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


#: The inverse temperatures 1/T at which the teacher's cached outputs keep what its tempered rest needs: 2^(g/2) for
#: g = -6..4, T from 8 down to 0.25 (a study's temperatures, and token temperatures at 0.5-2x of them, lie inside).
BETAS = tuple(2 ** (g / 2) for g in range(-6, 5))


def rest_statistics(logits: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the teacher's probability outside its top k needs at any temperature, from its full ``logits [..., V]``
    and top-k ``indices [..., k]``: at each of ``BETAS``, the log-sum-exp of beta times the other tokens' logits
    (A(beta), ``[..., len(BETAS)]``) and its derivative, their mean logit under that tempered distribution
    (A'(beta))."""
    logits = logits.float()
    others = logits.scatter(-1, indices.long(), float("-inf"))
    kept = logits.scatter(-1, indices.long(), 0.0)  # the other tokens' logits, 0 at the top k (weighted 0 below)
    lse, mean = [], []
    for beta in BETAS:
        scaled = others * beta
        a = torch.logsumexp(scaled, -1)
        lse.append(a)
        mean.append((scaled.sub_(a[..., None]).exp_() * kept).sum(-1))  # E[z] under the tempered rest
    return torch.stack(lse, -1), torch.stack(mean, -1)


def rest_log_mass(lse: torch.Tensor, mean: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """log sum over the tokens outside the top k of exp(beta z) at ``beta`` (a number, or one per position
    ``[..., 1]``), from ``rest_statistics``: a cubic Hermite interpolation in beta between the grid's neighbours (the
    function is smooth and convex: the cubic's error is a few 1e-4 nats where a chord's is 1e-1), the tangent
    beyond its ends."""
    grid = torch.tensor(BETAS, dtype=lse.dtype, device=lse.device)
    beta = torch.as_tensor(beta, dtype=lse.dtype, device=lse.device)
    beta = beta.expand(*lse.shape[:-1], 1)
    i = (2 * torch.log2(beta) + 6).floor().clamp(0, len(BETAS) - 2).long()
    a0, a1, d0, d1 = lse.gather(-1, i), lse.gather(-1, i + 1), mean.gather(-1, i), mean.gather(-1, i + 1)
    b0, b1 = grid[i], grid[i + 1]
    h = b1 - b0
    t = (beta - b0) / h
    cubic = (2 * t**3 - 3 * t**2 + 1) * a0 + (t**3 - 2 * t**2 + t) * h * d0 + (-2 * t**3 + 3 * t**2) * a1 + \
        (t**3 - t**2) * h * d1
    below, above = a0 + d0 * (beta - b0), a1 + d1 * (beta - b1)
    value = torch.where(t < 0, below, torch.where(t > 1, above, cubic))
    return value.squeeze(-1)


def on_support(student_logits: torch.Tensor, teacher_logits: torch.Tensor, indices: torch.Tensor | None,
               temperature: torch.Tensor | float, rest: tuple[torch.Tensor, torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's and the student's log-probabilities at ``temperature`` (a number, or one per token
    ``[..., 1]``) over one support: the whole vocabulary (``indices`` None); or the teacher's top-k tokens
    (``indices [..., k]``, ``teacher_logits`` their logits) and a last bin for every other token — the teacher's from
    ``rest`` (``rest_statistics``: its tempered mass outside the top k at this temperature, as the live teacher's
    would be; None: no mass there), the student's from its full softmax."""
    student = (student_logits.float() / temperature).log_softmax(-1)
    teacher = teacher_logits.float() / temperature
    if indices is None:
        return teacher.log_softmax(-1), student
    top = student.gather(-1, indices.long())
    covered = torch.logsumexp(top, dim=-1, keepdim=True).clamp(max=-1e-6)
    student_rest = torch.log(-torch.expm1(covered))  # log(1 - the student's mass on the teacher's top k)
    if rest is None:
        left = torch.full(teacher.shape[:-1], float("-inf"), device=teacher.device)
    else:
        beta = 1.0 / temperature if isinstance(temperature, (int, float)) else temperature.reciprocal()
        left = rest_log_mass(rest[0].float(), rest[1].float(), beta)
    total = torch.logaddexp(torch.logsumexp(teacher, -1), left).unsqueeze(-1)
    teacher_rest = (left.unsqueeze(-1) - total).clamp(min=math.log(1e-6))  # a floor: an empty bin costs no NaN
    return torch.cat([teacher - total, teacher_rest], -1), torch.cat([top, student_rest], -1)


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


__all__ = ["BETAS", "DIVERGENCES", "LOSSES", "forward_kl", "jsd", "masked_mean", "next_token_loss", "on_support",
           "rest_log_mass", "rest_statistics", "reverse_kl", "skew_kl"]
