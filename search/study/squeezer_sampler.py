"""Squeezer's sampler: screen many candidates on what is known before training, and train the most promising one.

A student's size and speed are measured without training (``trial.run.cheap_metrics``: the pipeline's transforms on the
untrained student, deployed and timed), so they need not be guessed; only the quality must be (accuracy; a language
model's perplexity). Each trial draws up to
``candidates`` recipes (random ones, and mutations of front members), measures their cheap metrics, drops those
that break a budget, predicts their quality with a random forest (scikit-learn) fit on the trials so far, and runs
the candidate whose predicted points (one per tree: the forest's spread is its uncertainty) add the most
hypervolume to the current front on average per second it should take (a second forest, fit on the finished
trials' wall times): hypervolume per hour of the user's time, not per trial. Screening itself is held to a tenth
(``SHARE``) of a trial's median wall time: candidates are measured until that is spent, and where fitting the forests
and measuring ``FEWEST`` candidates took longer last time, the trial is a plain random draw (the best of one or two
candidates is no better than a random draw, and trials that quick buy more hypervolume than screening them would).
The first ``warmup`` trials are random, to fit the forests on.

``SqueezerSampler`` is this as an ``optuna.samplers.BaseSampler``, so any Optuna study (and Tune's ``OptunaSearch``)
runs it unchanged: before a trial it screens; then each knob the trial asks for gets the chosen recipe's value, or a
``RandomSampler``'s.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Mapping, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from squeezer.search.trial import baselines
from squeezer.search.trial import records
from squeezer.search.results import scoring
from squeezer.search.config.experiment import ExperimentConfig
from squeezer.search.results.pareto import pareto_trials
from squeezer.search.trial.recipe import joint_distributions, recipe_key, replay_params, suggest_params
from squeezer.search.trial.benches import Bench
from squeezer.search.trial.run import UNBUILDABLE, broken_budgets, cheap_metrics, cheap_names, student

WARMUP = 5
MUTATE = 0.3  # share of a mutated candidate's knobs drawn afresh
SHARE = 0.1   # of a trial's (median) wall time, the most screening may take before it
FEWEST = 4    # candidates worth screening: where fewer fit in that time, a random draw is as good
TREES = 48


class Screen:
    """Proposes the next trial's recipe for a study; see the module's docstring."""

    def __init__(self, bench: Bench, teacher: Mapping[str, float], seed: int, candidates: int) -> None:
        self.bench, self.teacher, self.candidates = bench, teacher, candidates
        self.rng = np.random.default_rng(seed)
        self.space = joint_distributions(bench.config)
        self.draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        self.cheap = cheap_names(bench.config)  # what screening measures, and the forest reads
        self.cost: tuple[float, float] | None = None  # the last screening's seconds: fitting, and per candidate
        self.quality = bench.config.kind.quality  # what the forest predicts

    @property
    def config(self) -> ExperimentConfig:
        return self.bench.config

    def propose(self, done: Sequence[FrozenTrial], front: Sequence[FrozenTrial],
                taken: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any] | None:
        """Flat params of the recipe to try next, or None for a plain random draw (too few trials to learn from, or
        every candidate drawn is a recipe already ``taken``: run, running or queued — never proposed again)."""
        known = [t for t in done if records.has_metrics(t) and not baselines.is_baseline(t)]
        if len(known) < WARMUP:
            return None
        durations = [t.duration.total_seconds() for t in known if t.duration is not None]
        budget = SHARE * statistics.median(durations) if durations else math.inf
        if self.cost is not None and self.cost[0] + FEWEST * self.cost[1] > budget:
            return None  # trials this quick: a random draw buys more hypervolume than screening would
        started = time.perf_counter()
        quality, seconds = self.fit(known)
        fitted = time.perf_counter()
        seen = {recipe_key(params) for params in taken}
        measured: list[tuple[dict[str, Any], dict[str, float]]] = []
        for count in range(1, self.candidates + 1):  # until the budget is spent: the time of a trial's tenth
            params = self.draw(front)
            if recipe_key(params) not in seen and (cheap := self.measure(params)) is not None:
                measured.append((params, cheap))
            each = (time.perf_counter() - fitted) / count
            if measured and time.perf_counter() - started + each > budget:
                break
        self.cost = (fitted - started, each)
        if not measured:
            return None
        gains = self.expected_gains(quality, measured, front)
        takes = self.expected_seconds(seconds, measured)
        return measured[max(range(len(measured)), key=lambda i: (gains[i] / takes[i], -takes[i]))][0]

    def draw(self, front: Sequence[FrozenTrial]) -> dict[str, Any]:
        """A random recipe, or (half the time, once there is a front) a front member with some knobs drawn afresh."""
        keep: dict[str, Any] = {}
        front = [t for t in front if not baselines.is_baseline(t)]  # a baseline is no point of the space to mutate
        if front and self.rng.random() < 0.5:
            parent = front[int(self.rng.integers(len(front)))].params
            keep = {k: v for k, v in parent.items() if self.rng.random() > MUTATE}
        self.draws.enqueue_trial(keep)
        trial = self.draws.ask()
        suggest_params(trial, self.config)
        self.draws.tell(trial, state=optuna.trial.TrialState.FAIL)  # only the draw was wanted
        return dict(trial.params)

    def measure(self, flat: Mapping[str, Any]) -> dict[str, float] | None:
        """The recipe's cheap metrics; None if it breaks a budget or cannot be built."""
        params = replay_params(self.config, flat)
        try:
            model, ctx = student(self.bench, params, seed=0)
            cheap = cheap_metrics(self.bench, model, params, ctx)
        except UNBUILDABLE:  # a candidate that cannot be built is not proposed; anything else is a bug
            return None
        return None if broken_budgets(self.bench, cheap) else cheap

    def fit(self, known: Sequence[FrozenTrial]) -> tuple[Any, Any]:
        """Two forests on the finished trials' features: one predicts the quality's score (``Quality.score``:
        accuracy; minus the log of a perplexity), one the log of a trial's seconds."""
        from sklearn.ensemble import RandomForestRegressor

        x = np.array([self.features(t.params, records.metrics(t)) for t in known])
        quality = RandomForestRegressor(n_estimators=TREES, min_samples_leaf=2, random_state=0).fit(
            x, [self.quality.score(records.metrics(t)[self.quality.metric]) for t in known])
        timed = [i for i, t in enumerate(known) if t.duration is not None]
        seconds = RandomForestRegressor(n_estimators=TREES // 2, min_samples_leaf=2, random_state=0).fit(
            x[timed], np.log([max(known[i].duration.total_seconds(), 1e-3) for i in timed]))
        return quality, seconds

    def expected_seconds(self, forest: Any, candidates: Sequence[tuple[Mapping[str, Any], Mapping[str, float]]]
                         ) -> list[float]:
        """Per candidate, the wall time a trial of it should take (the seconds forest): what the hypervolume it may
        add is divided by."""
        return list(np.exp(forest.predict(np.array([self.features(p, c) for p, c in candidates]))))

    def features(self, flat: Mapping[str, Any], cheap: Mapping[str, float]) -> list[float]:
        """Every knob as a number (-1 where a branch left it out), and the log of each cheap metric (a finished
        trial's own: training does not change them)."""
        row = [_number(dist, flat[name]) if name in flat else -1.0 for name, dist in self.space.items()]
        return row + [math.log(max(cheap[k], 1e-12)) for k in self.cheap]

    def expected_gains(self, forest: Any, candidates: Sequence[tuple[Mapping[str, Any], Mapping[str, float]]],
                       front: Sequence[FrozenTrial]) -> list[float]:
        """Per candidate ``(params, cheap metrics)``: the mean over the forest's trees of the hypervolume its point
        would add to the front."""
        x = np.array([self.features(params, cheap) for params, cheap in candidates])
        predicted = np.stack([tree.predict(x) for tree in forest.estimators_])  # trees x candidates
        members = [records.metrics(t) for t in front]
        objectives, reference = self.config.objectives, self.config.search.reference
        base = scoring.hypervolume(members, objectives, self.teacher, reference)
        return [float(np.mean([scoring.hypervolume([*members, {**cheap, self.quality.metric: self.value(score)}],
                                                   objectives, self.teacher, reference) - base
                               for score in predicted[:, i]]))
                for i, (_, cheap) in enumerate(candidates)]

    def value(self, score: float) -> float:
        """The quality whose ``Quality.score`` is ``score``."""
        return float(score) if self.quality.higher_is_better else math.exp(-float(score))


class SqueezerSampler(BaseSampler):
    """Squeezer's sampler (see the module's docstring): random until it has a ``Screen`` (``use``, once the study
    knows its teacher) and enough trials to learn from; then the screened recipe. Recipes queued in the study (a
    baseline, a warm start's front) run as queued."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = RandomSampler(seed=seed)
        self._screen: Screen | None = None
        self._chosen: dict[int, dict[str, Any]] = {}  # trial number -> the screened recipe it runs

    def use(self, screen: Screen) -> None:
        self._screen = screen

    def __getstate__(self) -> dict[str, Any]:  # Tune saves its searcher's sampler; the screen is the driver's
        return {**self.__dict__, "_screen": None}

    def screened(self, number: int) -> bool:
        """Whether trial ``number`` (asked in this process) runs a screened recipe."""
        return number in self._chosen

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}  # the space is conditional: knobs are sampled one by one, as the trial asks for them

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if self._screen is None or "fixed_params" in trial.system_attrs:  # queued: runs as queued
            return
        trials = study.get_trials(deepcopy=False)
        taken = [t.params for t in trials if t.state != TrialState.FAIL]  # a failed trial may be run again
        params = self._screen.propose([t for t in trials if t.state == TrialState.COMPLETE],
                                      pareto_trials(study, self._screen.config.objectives), taken)
        if params is not None:
            self._chosen[trial.number] = params

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        chosen = self._chosen.get(trial.number, {})
        if param_name in chosen:
            return chosen[param_name]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()


def _number(dist: BaseDistribution, value: Any) -> float:
    internal = float(dist.to_internal_repr(value))
    log = isinstance(dist, (IntDistribution, FloatDistribution)) and dist.log
    return math.log(internal) if log else internal
