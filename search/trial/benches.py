"""A kind of model's bench: what every trial of a study shares (its data, teacher and the teacher's outputs,
prepared once) and how a student of that kind is built, deployed and measured. ``Bench`` is the interface the
layers above ask; ``prepare`` makes the bench of the config's kind (``config.kinds``) by its name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from torch import nn

from squeezer.compressors.base import Report
from squeezer.compressors.device import Device
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.config.kinds import CAUSAL_LM, CLASSIFIER
from squeezer.search.trial.lm import workbench as lm_workbench
from squeezer.search.trial import workbench
from squeezer.search.trial.workbench import Given


class Bench(Protocol):
    """What a trial asks of its study's bench, whatever the kind of model (``Workbench``: a classifier's;
    ``LmWorkbench``: a causal language model's)."""

    config: ExperimentConfig
    tfidf: dict[str, float] | None  # a text classifier's baseline, where it has one

    @property
    def device(self) -> Device: ...

    @property
    def validation_count(self) -> int: ...

    def student(self, params: Mapping[str, Mapping[str, Any]], seed: int,
                report: Report = ...) -> tuple[nn.Module, Any]:
        """The untrained student of a recipe (seeded) and the context its compressors run in."""

    def measure_untrained(self, model: nn.Module, only: list[str], workdir: Path) -> dict[str, float]:
        """What is known before training: the ``only`` metrics of the compressed, untrained student."""

    def deploy_and_measure(self, model: nn.Module, params: Mapping[str, Mapping[str, Any]],
                           workdir: Path) -> dict[str, float]:
        """A trained student deployed as the user deploys it, under ``workdir``, and measured there."""

    def baseline(self) -> dict[str, float]:
        """The teacher measured as students are: the reference of every ratio."""

    def time_against(self, teacher: Mapping[str, float]) -> None:
        """Time every student against the teacher, whose figures are ``teacher``, from now on."""

    def test_quality(self, folder: Path) -> float:
        """The test-split quality of a trial's deployed model under ``folder``."""

    def sent_by_path(self) -> Bench:
        """This bench for worker processes of this machine: its files travel as their paths."""


#: The kind of model's name -> how its bench is prepared from the config and the caller's objects.
PREPARE: dict[str, Callable[[ExperimentConfig, Given], Bench]] = {
    CLASSIFIER.name: workbench.prepare,
    CAUSAL_LM.name: lambda config, given: lm_workbench.prepare(config, given.teacher, given.tokenizer),
}


def prepare(config: ExperimentConfig, given: Given | None = None) -> Bench:
    """The bench of ``config``'s kind of model: data read, teacher loaded (or trained) and its outputs cached, every
    student the space allows checked; every input error is raised here, before a study or run exists."""
    return PREPARE[config.kind.name](config, given or Given())


__all__ = ["Bench", "PREPARE", "prepare"]
