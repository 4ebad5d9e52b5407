"""Samplers that travel: what Ray Tune pickles in place of the configured Optuna sampler."""

from __future__ import annotations

from typing import Any, Sequence

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from squeezer.search.study.samplers import make


class Portable(BaseSampler):
    """A sampler that travels as its recipe: ``search.sampler``'s name, settings and seed.

    Ray Tune pickles its searcher, and with it the sampler (when a run starts and with each saved state). Some of
    Optuna's samplers hold what cannot be pickled (NSGA-II a thread lock since Optuna 5.1), so the built sampler stays
    in the process that uses it: a copy made by unpickling builds its own on first use, reseeded so that a restored
    driver does not draw its first life's points again (the study's trials carry what a sampler learns from)."""

    def __init__(self, search: Any, seed: int) -> None:
        self.search, self.seed = search, seed
        self._built: BaseSampler | None = None
        self._fresh = True  # built here, not unpickled

    @property
    def sampler(self) -> BaseSampler:
        """The sampler itself, built on first use."""
        if self._built is None:
            self._built = make(self.search, self.seed)
            if not self._fresh:
                self._built.reseed_rng()
        return self._built

    def __getstate__(self) -> dict[str, Any]:
        return {"search": self.search, "seed": self.seed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["search"], state["seed"])
        self._fresh = False

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
