"""The distillation losses, each a plain function of tensors that equals its published formula."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def soft_targets(teacher_logits: Sequence[torch.Tensor], temperature: float,
                 weighting: str = "mean") -> torch.Tensor:
    """Log-probabilities of the teachers' combined soft labels at ``temperature``.

    One teacher: ``log_softmax(t / T)``. Several: their probabilities averaged, either equally (``mean``) or per
    sample in proportion to each teacher's confidence, its top-class probability at T = 1 (``confidence``).
    """
    if len(teacher_logits) == 1:
        return F.log_softmax(teacher_logits[0] / temperature, dim=1)
    probs = torch.stack([F.softmax(t / temperature, dim=1) for t in teacher_logits])   # (K, N, C)
    if weighting == "confidence":
        confidence = torch.stack([F.softmax(t, dim=1).amax(1) for t in teacher_logits])  # (K, N)
        weights = confidence / confidence.sum(0, keepdim=True)
    else:
        weights = torch.full(probs.shape[:2], 1 / len(teacher_logits), device=probs.device)
    return torch.log((weights.unsqueeze(-1) * probs).sum(0).clamp_min(1e-12))


def soft_loss(student_logits: torch.Tensor, target_log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft term, T²·KL(p_teacher ‖ softmax(s / T)), batch-averaged.

    The T² keeps its gradients on the scale of the hard term's as T changes.
    """
    return temperature**2 * F.kl_div(F.log_softmax(student_logits / temperature, dim=1), target_log_probs,
                                     reduction="batchmean", log_target=True)


def hard_loss(student_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy with the labels, averaged over the samples ``mask`` keeps (all by default; 0 if none)."""
    if mask is None:
        return F.cross_entropy(student_logits, labels)
    if not mask.any():
        return student_logits.sum() * 0.0
    return F.cross_entropy(student_logits[mask], labels[mask])


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, soft_weight: float, hard_weight: float) -> torch.Tensor:
    """Hinton KD: ``soft_weight``·T²·KL(softmax(t/T) ‖ softmax(s/T)) + ``hard_weight``·CE(s, y)."""
    soft = soft_loss(student_logits, soft_targets([teacher_logits], temperature), temperature)
    return soft_weight * soft + hard_weight * hard_loss(student_logits, labels)


def feature_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """FitNets hint loss between a projected student feature and the teacher's: MSE, or 1 − cosine similarity."""
    if kind == "cosine":
        return (1 - F.cosine_similarity(student.flatten(1), teacher.flatten(1), dim=1)).mean()
    return F.mse_loss(student, teacher)


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis's spatial attention before normalisation: the channel mean of squared activations."""
    return features.pow(2).mean(1)


def attention_loss(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """Attention transfer: mean squared difference of the L2-normalised, flattened maps.

    Maps of different resolutions are average-pooled to the smaller one first.
    """
    size = min(student_map.shape[-2], teacher_map.shape[-2]), min(student_map.shape[-1], teacher_map.shape[-1])
    s, t = (m.flatten(1) if tuple(m.shape[-2:]) == size else F.adaptive_avg_pool2d(m.unsqueeze(1), size).flatten(1)
            for m in (student_map, teacher_map))
    return (F.normalize(s, dim=1) - F.normalize(t, dim=1)).pow(2).mean()


def pseudo_labels(target_log_probs_t1: torch.Tensor, labels: torch.Tensor, labeled: torch.Tensor,
                  threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels for the hard loss where labels are hidden: the teacher's class where its confidence ≥ ``threshold``.

    Returns the labels to use and the mask of samples that have one (labeled, or confidently pseudo-labeled).
    """
    confidence, guess = target_log_probs_t1.exp().max(1)
    return torch.where(labeled, labels, guess), labeled | (confidence >= threshold)
