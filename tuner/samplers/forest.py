"""The default sampler: a random-forest surrogate and expected improvement over the valid configs.

Kernel search spaces are small and discrete once constrained (thousands of valid configs), so the
sampler scores every one of them rather than searching a continuous relaxation:

- it picks only from the enumerated valid configs (``candidates.valid_configs``), never one
  already measured or in flight, so no measurement is spent on a rejection or a repeat;
- the first ``n_startup`` picks are uniform over the valid configs, and so is one pick in ten
  after them (``explore``) until ``local_after`` configs are measured (to the end in a space of
  at most 4 x ``local_after`` valid configs), so that a second basin is
  not missed for the first one found (over several families: a family uniformly, then one of its
  configs, so a small family is tried too); after that every pick is the model's (spending a tenth
  of a 200-config budget on uniform picks late cost more than it found);
- then an extra-trees forest is fitted to what was measured (log latency; a failed config gets a
  value worse than any measured, so its neighbourhood is avoided), the spread of its trees is the
  uncertainty, and the config of largest expected improvement is proposed (refitted after each
  measurement early on, after every n/25 new ones later); every
  ``local_every``-th pick looks only at the neighbours (one parameter set to another choice) of the
  ``top_k`` best configs so far, which finishes a basin the global model has found;
- configs in flight count as measured at the mean so far (a constant liar), so a batch of
  proposals spreads out;
- with two objectives whose second one varies (latency and error), each pick scalarizes them with
  random weights (ParEGO's augmented Chebyshev), so the whole front is explored; with one
  objective, or an error that is the same everywhere, it is plain latency.

Enqueued trials (a warm start) are answered as enqueued.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from .candidates import CandidateSet

_STATES = (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)


# A space of at most this many times ``local_after`` valid configs keeps its uniform picks to the
# end: there each one covers a large share of what is left, so it keeps its worth late.
_SMALL = 4


class ForestSampler(BaseSampler):
    # The hyperparameters are general defaults, set on the six recorded convolution spaces of
    # bench/search_efficiency.py (the only choice made there: when uniform picks stop); nothing
    # here knows those spaces' parameters.
    def __init__(self, candidates: CandidateSet, space: dict[str, BaseDistribution], seed: int | None = None,
                 n_startup: int = 10, trees: int = 16, local_every: int = 2, local_after: int = 30,
                 top_k: int = 3, explore: float = 0.1):
        self._candidates = candidates
        self._index = candidates.index()
        self._space = {name: space[name] for name in candidates.names}
        self._rng = np.random.default_rng(seed)
        self._random = RandomSampler(seed=seed)
        self._n_startup, self._trees = n_startup, trees
        self._local_every, self._local_after, self._top_k = local_every, local_after, top_k
        self._explore = explore
        self._features = np.ascontiguousarray(candidates.features, dtype=np.float32)
        self._fit: tuple[int, np.ndarray, np.ndarray] | None = None  # (measured when fitted, mean, spread)
        self._weights: np.ndarray | None = None  # of the objectives, in the last fit

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """Only for a parameter outside the template's (none in the study loop)."""
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def exhausted(self, study: Study) -> bool:
        """Every valid config is measured or in flight: the study loop stops proposing."""
        if not self._candidates.complete:
            return False
        taken = {self._key(t) for t in study._get_trials(deepcopy=False, states=_STATES, use_cache=True)}
        return len(taken - {None}) >= len(self._candidates)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space or not len(self._candidates) or "fixed_params" in trial.system_attrs:
            return {}
        measured, values, pending = self._history(study, trial)
        free = np.ones(len(self._candidates), dtype=bool)
        free[measured + pending] = False
        if not free.any():
            free[:] = True  # everything is taken: a repeat, which the study loop answers from storage
        ok = [v is not None for v in values]
        exploring = len(measured) < self._local_after or len(self._candidates) <= _SMALL * self._local_after
        if sum(ok) < self._n_startup or (exploring and self._rng.random() < self._explore):
            choice = self._uniform(free)
        else:
            choice = self._expected_improvement(study, measured, values, pending, free)
        return {name: value for name, value in zip(self._candidates.names, self._candidates.configs[choice],
                                                   strict=True) if value is not None}

    def _uniform(self, free: np.ndarray) -> int:
        """A free config drawn at random: over several families, a family first (each as likely,
        however few configs it has), then one of its configs."""
        pool = np.flatnonzero(free)
        families = np.unique(self._candidates.groups[pool])
        if len(families) > 1:
            pool = pool[self._candidates.groups[pool] == self._rng.choice(families)]
        return int(self._rng.choice(pool))

    # ---- the model ----

    def _history(self, study: Study, trial: FrozenTrial) -> tuple[list[int], list[Sequence[float] | None], list[int]]:
        measured: list[int] = []
        values: list[Sequence[float] | None] = []
        pending: list[int] = []
        for t in study._get_trials(deepcopy=False, states=_STATES, use_cache=True):
            i = self._key(t)
            if i is None or t.number == trial.number:
                continue
            if t.state in (TrialState.RUNNING, TrialState.WAITING):
                pending.append(i)
            else:
                measured.append(i)
                values.append(t.values if t.state is TrialState.COMPLETE else None)
        return measured, values, pending

    def _key(self, t: FrozenTrial) -> int | None:
        params = t.params or t.system_attrs.get("fixed_params") or {}
        # A knob of another family than the trial's is absent: None, as in the candidates.
        return self._index.get(tuple(params.get(name) for name in self._candidates.names))

    def _expected_improvement(self, study: Study, measured: list[int], values: list, pending: list[int],
                              free: np.ndarray) -> int:
        from scipy.special import ndtr

        refit = self._fit is None or len(measured) - self._fit[0] >= max(1, len(measured) // 25)
        if refit:
            self._weights = None  # new random weights for the two objectives with each fit
        target = self._scalarize(study, values)
        if refit or self._fit is None:
            mean, spread = self._predict(measured, target, pending)
        else:
            mean, spread = self._fit[1], self._fit[2]
        pool = np.flatnonzero(free)
        if len(measured) >= self._local_after and len(measured) % self._local_every == 0:
            near = self._near_best(measured, target, free)
            pool = near if len(near) else pool
        gain, spread = target.min() - mean[pool], spread[pool]
        z = gain / spread
        ei = gain * ndtr(z) + spread * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
        return int(pool[np.argmax(ei)])

    def _predict(self, measured: list[int], target: np.ndarray, pending: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The forest's mean and spread over every candidate, fitted now. A fit happens after every
        measurement early on and after every n/25 later (it costs more than one new point changes)."""
        from sklearn.tree import ExtraTreeRegressor

        rows = measured + pending
        y = np.concatenate([target, np.full(len(pending), target.mean())])
        x = np.ascontiguousarray(self._candidates.features[rows], dtype=np.float32)
        seeds = self._rng.integers(2**31, size=self._trees)
        trees = [ExtraTreeRegressor(max_features=None, random_state=int(seed)).fit(x, y, check_input=False)
                 for seed in seeds]
        per_tree = np.stack([tree.predict(self._features, check_input=False) for tree in trees])
        self._fit = (len(measured), per_tree.mean(axis=0), per_tree.std(axis=0) + 1e-12)
        return self._fit[1], self._fit[2]

    def _near_best(self, measured: list[int], target: np.ndarray, free: np.ndarray) -> np.ndarray:
        best = [measured[j] for j in np.argsort(target)[:self._top_k]]
        near = np.unique(np.concatenate([self._candidates.neighbours(i) for i in best]))
        return near[free[near]]

    def _scalarize(self, study: Study, values: list[Sequence[float] | None]) -> np.ndarray:
        """One number to minimize per measured config; failures worse than any success."""
        signs = np.array([1.0 if d is StudyDirection.MINIMIZE else -1.0 for d in study.directions])
        done = [np.asarray(v, dtype=np.float64) * signs for v in values if v is not None]
        target = np.full(len(values), np.nan)
        if done:
            objectives = np.stack(done)
            objectives = np.stack([_log_if_positive(c) for c in objectives.T], axis=1)
            span = objectives.max(axis=0) - objectives.min(axis=0)
            varying = span > 1e-12 * np.maximum(1.0, np.abs(objectives).max(axis=0))
            scaled = (objectives[:, varying] - objectives.min(axis=0)[varying]) / span[varying]
            if scaled.shape[1] <= 1:
                score = scaled[:, 0] if scaled.shape[1] else np.zeros(len(done))
            else:
                if self._weights is None or len(self._weights) != scaled.shape[1]:
                    self._weights = self._rng.dirichlet(np.ones(scaled.shape[1]))
                weights = self._weights
                score = (weights * scaled).max(axis=1) + 0.05 * (weights * scaled).sum(axis=1)
            target[[i for i, v in enumerate(values) if v is not None]] = score
        finite = target[np.isfinite(target)]
        worst = finite.max() + 0.25 * (np.ptp(finite) or 1.0) if len(finite) else 0.0
        return np.where(np.isfinite(target), target, worst)


def _log_if_positive(column: np.ndarray) -> np.ndarray:
    """Latency and error span decades: their logs are what a model should see. Zeros (an exact
    kernel's error) sit a decade below the smallest positive value."""
    if (column < 0).any():
        return column
    positive = column[column > 0]
    if not len(positive):
        return column
    return np.log10(np.where(column > 0, column, positive.min() / 10))
