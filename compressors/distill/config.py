"""Every setting of ``distill``, with the rules that make a combination valid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from squeezer.compressors.base import CompressorConfig, check, is_number
from squeezer.compressors.distill.schedules import TEMPERATURE_SCHEDULES
from squeezer.compressors.training import LR_SCHEDULES, Optim

METHODS = ("kd", "ema", "dml")          # soft labels from the teacher(s), an EMA of the student, a peer student
ENSEMBLES = ("none", "mean", "confidence")
WEIGHTINGS = ("fixed", "dwa", "adaptive")
FEATURE_LOSSES = ("mse", "cosine")
LOSSES = ("soft", "hard", "feature", "attention", "embedding")
MAX_COPIES = 16                         # augmented copies of each training text


@dataclass(frozen=True)
class DistillConfig(CompressorConfig):
    method: str = "kd"
    temperature: float = 4.0
    soft_weight: float = 0.7
    hard_weight: float = 0.3          # 0: soft-only, the labels are never read
    feature_weight: float = 0.0       # FitNets hints through a learned projection
    attention_weight: float = 0.0     # attention transfer: CNN feature maps, or transformer attention distributions
    embedding_weight: float = 0.0     # transformers: the embedding layer's output through a projection (TinyBERT)
    feature_layers: Any = "auto"      # auto (by relative depth) or ["student_layer:teacher_layer", ...]
    feature_loss: str = "mse"
    attention_layers: Any = "auto"
    ensemble: str = "none"            # multi-teacher: average the teachers' soft labels equally or by confidence
    label_fraction: float = 1.0       # < 1: the rest of the training labels are hidden; the teacher pseudo-labels them
    pseudo_threshold: float = 0.9     # ... where its confidence reaches this
    temperature_schedule: str = "constant"
    temperature_end: float = 1.0      # where linear, cosine and gap schedules (and the controller) take T
    weighting: str = "fixed"          # fixed, dwa (Dynamic Weight Average) or adaptive (the controller)
    dwa_temperature: float = 2.0
    controller_gain: float = 1.0
    probe_size: int = 1024            # held-out training samples on which gap and adaptive measure transfer
    ema_decay: float = 0.99
    epochs: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    lr_schedule: str = "constant"
    accumulate: int = 1
    patience: int = 0                 # > 0: stop once val accuracy has not improved for this many epochs
    augment: bool = False             # text: also train on augmented copies of the texts, labelled by the teacher
    augment_copies: int = 2           # ... this many of each text (token dropout, swap, span masking)

    def validate(self) -> None:
        for name, allowed in (("method", METHODS), ("ensemble", ENSEMBLES), ("weighting", WEIGHTINGS),
                              ("feature_loss", FEATURE_LOSSES), ("temperature_schedule", TEMPERATURE_SCHEDULES),
                              ("lr_schedule", LR_SCHEDULES)):
            check(getattr(self, name) in allowed, name, f"must be one of {list(allowed)}", getattr(self, name))
        for name in ("temperature", "temperature_end", "dwa_temperature"):
            check(is_number(getattr(self, name)) and getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        for name, weight in self.weights().items():
            check(is_number(weight) and weight >= 0, f"{name}_weight", "must be >= 0", weight)
        check(any(self.weights().values()), "soft_weight", "at least one loss weight (soft, hard, feature, "
              "attention, embedding) must be > 0", self.weights())
        check(is_number(self.label_fraction) and 0 < self.label_fraction <= 1, "label_fraction", "must be in (0, 1]",
              self.label_fraction)
        check(is_number(self.pseudo_threshold) and 0 <= self.pseudo_threshold <= 1, "pseudo_threshold",
              "must be in [0, 1]", self.pseudo_threshold)
        check(is_number(self.controller_gain) and self.controller_gain >= 0, "controller_gain", "must be >= 0",
              self.controller_gain)
        check(is_number(self.ema_decay) and 0 <= self.ema_decay < 1, "ema_decay", "must be in [0, 1)", self.ema_decay)
        check(isinstance(self.probe_size, int) and 1 <= self.probe_size <= 100_000, "probe_size",
              "must be an integer in [1, 100000]", self.probe_size)
        for name in ("feature_layers", "attention_layers"):
            _check_layers(getattr(self, name), name)
        check(isinstance(self.augment, bool), "augment", "must be true or false", self.augment)
        check(isinstance(self.augment_copies, int) and not isinstance(self.augment_copies, bool)
              and 1 <= self.augment_copies <= MAX_COPIES, "augment_copies", f"must be an integer in [1, {MAX_COPIES}] "
              "(augmented copies of each training text)", self.augment_copies)
        self._check_combination()
        self.optim().validate()

    def _check_combination(self) -> None:
        teacherless = self.method != "kd"
        check(not (teacherless and self.ensemble != "none"), "ensemble", f"needs method kd (method "
              f"{self.method!r} has no teachers to combine)", self.ensemble)
        for name in ("feature_weight", "attention_weight", "embedding_weight"):
            check(not (teacherless and getattr(self, name) > 0), name, f"needs method kd (method {self.method!r} "
                  "has no teacher network to take features from)", getattr(self, name))
        check(not (teacherless and self.augment), "augment", f"needs method kd (the teacher labels the augmented "
              f"texts; method {self.method!r} has none)", self.augment)
        check(not (teacherless and self.label_fraction < 1), "label_fraction", "< 1 needs method kd (the teacher "
              "pseudo-labels the rest)", self.label_fraction)
        # Both measure the student-teacher gap; an EMA or a peer starts as (a copy of) the student: no gap to close.
        check(not (teacherless and self.weighting == "adaptive"), "weighting", f"adaptive needs method kd (method "
              f"{self.method!r} has no teacher whose gap to the student the controller could follow)", self.weighting)
        check(not (teacherless and self.temperature_schedule == "gap"), "temperature_schedule", f"gap needs method "
              f"kd (method {self.method!r} has no teacher gap to follow)", self.temperature_schedule)
        check(not (self.weighting == "adaptive" and self.temperature_schedule != "constant"),
              "temperature_schedule", "must be constant with weighting adaptive (the controller sets T itself)",
              self.temperature_schedule)

    def weights(self) -> dict[str, float]:
        """The configured weight of each loss by name."""
        return {name: getattr(self, f"{name}_weight") for name in LOSSES}

    def optim(self) -> Optim:
        return Optim(self.epochs, self.lr, self.weight_decay, self.warmup_epochs, self.lr_schedule, self.accumulate,
                     self.patience)

    @property
    def needs_probe(self) -> bool:
        """Whether each epoch measures the transfer on held-out training samples."""
        return self.weighting == "adaptive" or self.temperature_schedule == "gap"


def _check_layers(value: Any, name: str) -> None:
    ok = value == "auto" or (isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(v, str) and v.count(":") == 1 and all(v.split(":")) for v in value))
    check(ok, name, "must be auto or a non-empty list of 'student_layer:teacher_layer' strings", value)
