"""Where each batch's soft labels come from: the teachers' cached logits, an EMA of the student, or a peer student."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from squeezer.compressors.distill.losses import hard_loss, soft_loss, soft_targets
from squeezer.compressors.distill.teacher_outputs import TeacherOutputs, ema_update


class Source:
    """Soft labels for a batch, as log-probabilities at temperature T."""

    parameters: list[nn.Parameter] = []

    def targets(self, idx: torch.Tensor, x: torch.Tensor, temperature: float) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def reference(self, idx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Soft labels at T = 1 without training side effects: what the student's transfer is measured against."""
        return self.targets(idx, x, 1.0)

    def extra_loss(self, student_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None,
                   temperature: float, weights: dict[str, float]) -> torch.Tensor | float:
        """A loss of the source's own (the peer's, in mutual learning), added to the student's."""
        return 0.0

    def after_step(self) -> None:
        """Called after each optimizer step."""


class Teachers(Source):
    """The teachers' logits, computed once per study; several teachers' soft labels are combined per sample."""

    def __init__(self, outputs: TeacherOutputs, ensemble: str) -> None:
        self.logits = outputs.all_logits() if ensemble != "none" else [outputs.logits()]
        self.ensemble = ensemble

    def targets(self, idx: torch.Tensor, x: torch.Tensor, temperature: float) -> torch.Tensor:
        return soft_targets([t[idx].to(x.device, non_blocking=True) for t in self.logits], temperature,
                            self.ensemble)


class EmaTeacher(Source):
    """Self-distillation: the teacher is an exponential moving average of the student's own weights."""

    def __init__(self, student: nn.Module, decay: float) -> None:
        self.student, self.decay = student, decay
        self.ema = copy.deepcopy(student).eval().requires_grad_(False)

    @torch.no_grad()
    def targets(self, idx: torch.Tensor, x: torch.Tensor, temperature: float) -> torch.Tensor:
        return F.log_softmax(self.ema(x) / temperature, dim=1)

    def after_step(self) -> None:
        ema_update(self.ema, self.student, self.decay)


class Peer(Source):
    """Deep mutual learning: a second student of the same architecture, differently initialised, trained alongside;
    each learns from the labels and from the other's soft labels."""

    def __init__(self, student: nn.Module, seed: int) -> None:
        self.peer = copy.deepcopy(student).train()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for module in self.peer.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()  # type: ignore[operator]
        self.parameters = list(self.peer.parameters())
        self._logits: torch.Tensor | None = None

    def targets(self, idx: torch.Tensor, x: torch.Tensor, temperature: float) -> torch.Tensor:
        self.peer.train()
        self._logits = self.peer(x)
        return F.log_softmax(self._logits.detach() / temperature, dim=1)

    def extra_loss(self, student_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None,
                   temperature: float, weights: dict[str, float]) -> torch.Tensor | float:
        if self._logits is None:
            raise RuntimeError("Peer.targets() must run before Peer.extra_loss() in each batch")
        from_student = F.log_softmax(student_logits.detach() / temperature, dim=1)
        loss = weights.get("soft", 0.0) * soft_loss(self._logits, from_student, temperature)
        return loss + weights.get("hard", 0.0) * hard_loss(self._logits, labels, mask)

    @torch.no_grad()
    def reference(self, idx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.peer.eval()
        return F.log_softmax(self.peer(x), dim=1)
