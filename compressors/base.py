"""The compressor interface: a frozen, validated config plus one method that transforms a model.

Knows nothing of Optuna, Ray or MLflow: whatever drives a compressor hands it a ``TrialContext``.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence

import torch
from torch import nn

from squeezer.compressors.device import Device

Report = Callable[[int, Mapping[str, float]], None]


class Outputs(Protocol):
    """The teachers' outputs on every training input, computed once per study (``distill.TeacherOutputs`` holds
    them, and more: features, attention maps, hidden states); teacher 0 is the main teacher."""

    def __len__(self) -> int: ...

    def logits(self, teacher: int = 0) -> torch.Tensor: ...

    def all_logits(self) -> list[torch.Tensor]: ...


class InvalidConfig(ValueError):
    """A compressor config value breaks a rule; the message names the field, the rule and the value."""

    def __init__(self, field_name: str, rule: str, value: Any) -> None:
        self.field, self.rule, self.value = field_name, rule, value
        super().__init__(f"{field_name}: {rule}, but got {value!r}")


@dataclass(frozen=True)
class CompressorConfig:
    """Base of every compressor's config: frozen, checked on construction, round-trips through a dict."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidConfig(f.name, "must be a finite number", value)
        self.validate()

    def validate(self) -> None:
        """Raise ``InvalidConfig`` for a value out of its domain."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "CompressorConfig":
        """Build from a mapping; unknown keys are an error that lists the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidConfig(unknown[0], f"unknown setting; known settings are {sorted(known)}", values[unknown[0]])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrialContext:
    """What a compressor may use: the teacher, the data, the seed, the device it trains on and a hook to report
    progress. The teacher is on that device; the data is there when it fits (else batches are copied over)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    teacher: nn.Module | None = None
    teachers: Outputs | None = None  # the teachers' outputs on train_x, computed once per study
    seed: int = 0
    batch_size: int = 128
    report: Report = field(default=lambda step, metrics: None)
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None  # train-time augmentation of an input batch
    device: Device = field(default_factory=Device)
    #: ``copies(n)``: this context over the training texts plus ``n`` augmented copies of each, labelled by the
    #: teachers' outputs on them (text studies; None elsewhere)
    copies: Callable[[int], "TrialContext"] | None = None

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The training inputs at ``idx`` as they are, on the training device."""
        return self.device.put(self.train_x[idx])

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """The training inputs at ``idx`` on the training device, augmented when the study augments (a training
        batch)."""
        x = self.rows(idx)
        return x if self.augment is None else self.augment(x)

    def labels(self, idx: torch.Tensor) -> torch.Tensor:
        """The training labels at ``idx``, on the training device."""
        return self.device.put(self.train_y[idx])

    def augmented(self, copies: int) -> "TrialContext":
        """This context over the training inputs and ``copies`` augmented copies of each (see ``copies``)."""
        if self.copies is None:
            raise InvalidConfig("augment", "needs text data whose teacher labels the augmented copies", copies)
        return self.copies(copies)

    def generator(self, salt: int = 0) -> torch.Generator:
        """A generator seeded from the trial seed, so a stage repeats exactly under the same seed."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)


class Compressor(ABC):
    """A named model transform with its own config class.

    Subclasses set ``name`` and ``Config`` and implement ``apply``, which must leave its input model untouched.
    """

    name: ClassVar[str]
    Config: ClassVar[type[CompressorConfig]]
    #: A final compressor's output cannot be trained or compressed further: it must be the pipeline's last step.
    final: ClassVar[bool] = False
    #: The config fields that count epochs of training; ``untrained`` sets them to 0.
    training_fields: ClassVar[tuple[str, ...]] = ()
    #: What a pipeline step named without settings searches (``- prune`` or ``prune: {}``, or the step left out of a
    #: config that names no pipeline): a space as the experiment file writes one. Empty: the config's defaults.
    searched: ClassVar[Mapping[str, Any]] = {}
    #: What the compressor works on: ``classifier`` (a ``TrialContext``) or ``language_model`` (an ``LmContext``).
    task: ClassVar[str] = "classifier"

    def __init__(self, config: CompressorConfig | Mapping[str, Any] | None = None) -> None:
        if config is None or isinstance(config, Mapping):
            config = self.Config.from_dict(config or {})
        if not isinstance(config, self.Config):
            raise TypeError(f"{self.name} takes a {self.Config.__name__}, not {type(config).__name__}")
        self.config = config

    @abstractmethod
    def apply(self, model: nn.Module, ctx: TrialContext) -> nn.Module:
        """Return a compressed copy of ``model``."""

    def untrained(self) -> "Compressor | None":
        """This transform without its training (``training_fields`` at 0), or None if the step only trains (its
        output is shaped like its input). The study applies it to an untrained student to know the result's size
        and speed before any training, and rejects a trial that breaks a budget on them."""
        if not self.training_fields:
            return self
        return type(self)(dataclasses.replace(self.config, **dict.fromkeys(self.training_fields, 0)))

    def check_models(self, student: nn.Module, teachers: Sequence[nn.Module], example: torch.Tensor) -> None:
        """Raise ``InvalidConfig`` if this config cannot work with these models (built on the meta device, before
        anything trains; ``example`` is an input batch there), e.g. a layer it names does not exist."""
        return None  # most compressors work with any model

    def check_data(self, train_size: int) -> None:
        """Raise ``InvalidConfig`` if this config cannot work with a training split of ``train_size`` samples (checked
        before anything trains), e.g. it sets aside more of them than there are."""
        return None

    def label(self) -> str:
        """A few words for a trial's run name (``prune 30 %``), where the recipe is read at a glance; '' when the
        step changes nothing worth naming. By default the compressor's name."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (``CompressorConfig`` has refused non-finite floats already)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check(ok: bool, field_name: str, rule: str, value: Any) -> None:
    """Raise ``InvalidConfig`` unless ``ok``: the one way configs validate (asserts vanish under -O)."""
    if not ok:
        raise InvalidConfig(field_name, rule, value)
