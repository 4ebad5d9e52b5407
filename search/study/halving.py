"""Multi-fidelity over epochs (``search.scheduler: halving``): every trial starts cheap, and only the promising ones
get more epochs — successive halving, judged on the multi-objective front.

Optuna's ``SuccessiveHalvingPruner`` keeps the bookkeeping (rungs at ``rung_epochs`` x ``reduction_factor``^k
epochs; at each, a trial goes on only if its value is in the top 1/``reduction_factor`` of the values recorded
there), but Optuna cannot prune a multi-objective trial. So each trial has a twin in a single-objective study beside
it in the same storage (``<study>:rungs``), and the twin reports, at each rung, how far the trial stands from
the front at that fidelity: its validation accuracy against the best accuracy that a trial *no more expensive* (on
every cheap objective — size, latency within its confidence interval — known before training) reached after as
many epochs. On that front it reports 0; dominated, the accuracy it lacks (beyond their standard errors), negative.
Every trial on the front at a rung therefore goes on; of the others, only as many as fill the top
1/``reduction_factor``. A trial that completes has trained for the whole budget (the pipeline's epochs, e.g.
``distill.epochs``, are the maximum): only such trials are on the study's front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from squeezer.compressors.base import Report
from squeezer.search.config.objectives import ERRORS, standard_error
from squeezer.search.study.early_stop import ACCURACY
from squeezer.search.trial.run import Outcome, StoppedEarly

#: The twin trial's user attribute holding the cheap metrics, and the prefix of its per-epoch accuracies.
CHEAP, EPOCH = "cheap", "epoch "
SUFFIX = ":rungs"  # a study name never holds ':' (``rules.check_name``): the twin's cannot clash with a user's


def rungs_study(name: str, storage: BaseStorage, rung_epochs: int, reduction_factor: int) -> optuna.Study:
    """The single-objective twin of study ``name`` (created once, then joined), pruned by successive halving."""
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=rung_epochs, reduction_factor=reduction_factor)
    return optuna.create_study(study_name=name + SUFFIX, storage=storage, direction="maximize", pruner=pruner,
                               load_if_exists=True)


def user_studies(storage: BaseStorage) -> list[str]:
    """The names of the studies in ``storage`` that users made (not successive halving's twins)."""
    return [s.study_name for s in optuna.get_all_study_summaries(storage) if not s.study_name.endswith(SUFFIX)]


def standing(accuracy: float, cheap: Mapping[str, float], others: Iterable[tuple[float, Mapping[str, float]]],
             objectives: Mapping[str, str], samples: int) -> float:
    """A trial's standing at a fidelity: 0 if none of ``others`` (their accuracy after as many epochs, their cheap
    metrics) that costs no more reached more accuracy, beyond the two standard errors over ``samples`` validation
    samples; else the accuracy lacking, negative."""
    best = max((theirs for theirs, their_cheap in others if no_dearer(their_cheap, cheap, objectives)), default=None)
    if best is None:
        return 0.0
    return min(0.0, accuracy + math.hypot(standard_error(accuracy, samples), standard_error(best, samples)) - best)


def no_dearer(other: Mapping[str, float], mine: Mapping[str, float], objectives: Mapping[str, str]) -> bool:
    """Whether a trial with cheap metrics ``other`` costs at most ``mine`` on every cheap objective (within the
    latencies' confidence intervals)."""
    for name, direction in objectives.items():
        if name == ACCURACY or name not in mine or name not in other:
            continue
        margin = math.hypot(mine.get(ERRORS.get(name, ""), 0.0), other.get(ERRORS.get(name, ""), 0.0))
        if (1.0 if direction == "minimize" else -1.0) * (other[name] - mine[name]) > margin:
            return False
    return True


@dataclass
class Halving:
    """The rule for one trial: its twin in ``rungs``, asked when the trial's cheap metrics are known; it reports
    (and reads the other trials) only at the rungs, where the pruner judges."""

    rungs: optuna.Study  # ``rungs_study``, pruned on the same rungs
    objectives: Mapping[str, str]
    rung_epochs: int
    reduction_factor: int
    validation_count: int = 0  # accuracy's standard error depends on it
    cheap: Mapping[str, float] | None = field(default=None, init=False)
    twin: optuna.Trial | None = field(default=None, init=False)
    epochs: int = field(default=0, init=False)
    last: float = field(default=0.0, init=False)

    def watch(self, cheap: Mapping[str, float]) -> Report:
        """The per-epoch hook of a trial with these cheap metrics: stops it (``StoppedEarly``) at a rung it fails."""
        self.cheap = dict(cheap)
        self.twin = self.rungs.ask()
        self.twin.set_user_attr(CHEAP, self.cheap)

        def check(step: int, metrics: Mapping[str, float]) -> None:
            accuracy = next((v for k, v in metrics.items() if k.endswith(".val_accuracy")), None)
            if accuracy is None or self.twin is None:
                return
            self.epochs += 1  # epochs trained so far, over every training step of the pipeline
            if not self.at_rung(self.epochs):
                return  # judged only at a rung: the pruner reads no other epoch, nor do other trials
            self.last = standing = self.standing(accuracy)
            self.twin.set_user_attr(f"{EPOCH}{self.epochs}", accuracy)
            self.twin.report(standing, self.epochs)
            if self.twin.should_prune():
                raise StoppedEarly(f"successive halving: after {self.epochs} epoch(s), val accuracy {accuracy:.4f} "
                                   f"is {-standing:.4f} short of the front at that fidelity, outside the top "
                                   f"1/{self.reduction_factor} of the trials that reached it")
        return check

    def at_rung(self, epochs: int) -> bool:
        """Whether a trial is judged after ``epochs`` epochs: ``rung_epochs`` x ``reduction_factor``^k."""
        rung = self.rung_epochs
        while rung < epochs:
            rung *= self.reduction_factor
        return rung == epochs

    def standing(self, accuracy: float) -> float:
        """This trial's standing after ``self.epochs`` epochs against every other trial's at as many (``standing``)."""
        key = f"{EPOCH}{self.epochs}"
        others = [(t.user_attrs[key], t.user_attrs.get(CHEAP, {})) for t in self.rungs.get_trials(deepcopy=False)
                  if t.number != self.twin.number and key in t.user_attrs]
        return standing(accuracy, self.cheap or {}, others, self.objectives, self.validation_count)

    def end(self, outcome: Outcome) -> None:
        """Tell the twin how its trial ended."""
        if self.twin is None:
            return
        if outcome.stopped or outcome.metrics is None:
            self.rungs.tell(self.twin, state=TrialState.PRUNED if outcome.stopped else TrialState.FAIL)
        else:
            self.rungs.tell(self.twin, self.last)
