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

A language model's study halves the same way on its validation perplexity (compared as the mean cross-entropy,
``Quality.score``), and its fidelity is ``lm_distill``'s evaluations: a rung of 1 is ``lm_distill.eval_every``
training steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from squeezer.compressors.base import Report
from squeezer.search.config.objectives import ACCURACY, ERRORS, Quality
from squeezer.search.errors import ConfigError
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


def user_study(storage: BaseStorage, name: str, where: str) -> optuna.Study:
    """Study ``name`` of ``storage`` (at ``where``), refused in one line where no user's study has that name."""
    names = user_studies(storage)
    if name not in names:
        raise ConfigError("--study-name", f"no such study in {where}; studies there: {names}", name)
    return optuna.load_study(study_name=name, storage=storage)


def standing(value: float, cheap: Mapping[str, float], others: Iterable[tuple[float, Mapping[str, float]]],
             objectives: Mapping[str, str], samples: int, quality: Quality = ACCURACY) -> float:
    """A trial's standing at a fidelity: 0 if none of ``others`` (their validation ``quality`` after as many
    epochs, their cheap metrics) that costs no more reached a better one, beyond the two standard errors over
    ``samples`` validation samples; else the score lacking (``Quality.score``: accuracy; minus the cross-entropy),
    negative."""
    best = max((quality.score(theirs) for theirs, their_cheap in others
                if no_dearer(their_cheap, cheap, objectives)), default=None)
    if best is None:
        return 0.0
    mine = quality.score(value)
    error = math.hypot(quality.score_error(value, samples), quality.score_error(best, samples))
    return min(0.0, mine + error - best)


def no_dearer(other: Mapping[str, float], mine: Mapping[str, float], objectives: Mapping[str, str]) -> bool:
    """Whether a trial with cheap metrics ``other`` costs at most ``mine`` on every cheap objective (within the
    latencies' confidence intervals)."""
    for name, direction in objectives.items():
        if name not in mine or name not in other:  # the trained quality is not a cheap metric
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
    quality: Quality = ACCURACY  # what trials are judged on
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
            value = next((v for k, v in metrics.items() if k.endswith("." + self.quality.val_metric)), None)
            if value is None or self.twin is None:
                return
            self.epochs += 1  # epochs (evaluations) so far, over every training step of the pipeline
            if not self.at_rung(self.epochs):
                return  # judged only at a rung: the pruner reads no other epoch, nor do other trials
            self.last = standing = self.standing(value)
            self.twin.set_user_attr(f"{EPOCH}{self.epochs}", value)
            self.twin.report(standing, self.epochs)
            if self.twin.should_prune():
                unit = "epoch(s)" if self.quality is ACCURACY else "evaluation(s)"
                raise StoppedEarly(f"successive halving: after {self.epochs} {unit}, val {self.quality.metric} "
                                   f"{value:.4f} is {-standing:.4f} short of the front at that fidelity, outside the "
                                   f"top 1/{self.reduction_factor} of the trials that reached it")
        return check

    def at_rung(self, epochs: int) -> bool:
        """Whether a trial is judged after ``epochs`` epochs: ``rung_epochs`` x ``reduction_factor``^k."""
        rung = self.rung_epochs
        while rung < epochs:
            rung *= self.reduction_factor
        return rung == epochs

    def standing(self, value: float) -> float:
        """This trial's standing after ``self.epochs`` epochs against every other trial's at as many (``standing``)."""
        key = f"{EPOCH}{self.epochs}"
        others = [(t.user_attrs[key], t.user_attrs.get(CHEAP, {})) for t in self.rungs.get_trials(deepcopy=False)
                  if t.number != self.twin.number and key in t.user_attrs]
        return standing(value, self.cheap or {}, others, self.objectives, self.validation_count, self.quality)

    def end(self, outcome: Outcome) -> None:
        """Tell the twin how its trial ended."""
        if self.twin is None:
            return
        if outcome.stopped or outcome.metrics is None:
            self.rungs.tell(self.twin, state=TrialState.PRUNED if outcome.stopped else TrialState.FAIL)
        else:
            self.rungs.tell(self.twin, self.last)
