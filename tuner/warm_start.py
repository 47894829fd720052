"""Warm start across shapes: a new study begins with what the nearest tuned shapes found.

The configs come from the stored fronts of the studies of the same kernel and arch whose problem
is nearest (the distance ``best`` uses: ``service.problem_distance``), nearest first; where the
fronts hold fewer than ``limit`` configs (one objective: a front of one), the next-fastest ok
configs of the same studies follow. Only configs that pass the new problem's constraints are
kept; they are enqueued as the study's first trials, so the sampler starts from them and they are
measured (on the new shape) like any other trial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import optuna

from tuner.db import Store
from tuner.kernel_templates import Device, KernelSpec, Problem, canonical_json, default_family
from tuner.kernel_templates.families import FAMILY, member

from .search_space import optuna_params, rejection, stored_config
from .service import problem_distance

LIMIT = 8


def nearest_configs(store: Store, *, kernel: str, arch: str, problem: Problem, study: str,
                    limit: int = LIMIT) -> list[dict[str, Any]]:
    """Configs of the nearest comparable tuned studies (not ``study`` itself), best first."""
    tuned = [(other.problem, other.best_latency_s or float("inf"), other.id) for other in store.studies()
             if other.kernel == kernel and other.arch == arch and other.name != study]

    def configs_of(study_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        fastest = store.trials(study_id, status="ok", sort="latency", limit=limit).items
        return [t.config for t in store.front(study_id)], [t.config for t in fastest]

    return nearest_first(problem, tuned, configs_of, limit)


def nearest_first(problem: Problem, tuned: Iterable[tuple[Problem, float, Any]],
                  configs_of: Callable[[Any], tuple[list[dict[str, Any]], list[dict[str, Any]]]],
                  limit: int = LIMIT) -> list[dict[str, Any]]:
    """``tuned``: (problem, best latency, key) of each tuned study; ``configs_of(key)``: its front and
    its fastest ok configs. The fronts of the nearest (ties: the faster) come first, then the rest."""
    ranked = []
    for other, best_s, key in tuned:
        distance = problem_distance(dict(problem), dict(other))
        if distance is not None:
            ranked.append((distance, best_s, key))
    fronts: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for _, _, key in sorted(ranked, key=lambda r: (r[0], r[1])):
        front, fastest = configs_of(key)
        fronts += front
        rest += fastest
        if len(_unique(fronts)) >= limit:
            break
    return _unique(fronts + rest)[:limit]


def admissible(configs: Iterable[dict[str, Any]], spec: KernelSpec, problem: Problem,
               device: Device) -> list[dict[str, Any]]:
    """The configs that are this template's (one of its families') and pass its constraints for
    this problem. A config of another family of the kernel is not; one stored with no family (before
    the kernel had several) is the default family's."""
    kept = []
    for config in configs:
        try:
            family, own = member(spec, config)
        except ValueError:
            continue  # a family this search does not hold
        ours = stored_config(spec, family, own)
        if (config.get(FAMILY, default_family(spec)) == family.family
                and own.keys() == {p.name for p in family.params}
                and all(own[p.name] in p.choices for p in family.params)
                and rejection(spec, ours, problem, device) is None):
            kept.append(ours)
    return kept


def enqueue(study: optuna.Study, spec: KernelSpec, configs: Sequence[dict[str, Any]]) -> int:
    """Queues ``configs`` as the first trials of a study that has none; returns how many."""
    if study.get_trials(deepcopy=False):
        return 0  # a study that resumes has its own history
    for config in configs:
        study.enqueue_trial(optuna_params(spec, config), skip_if_exists=True)
    return len(configs)


def _unique(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for config in configs:
        seen.setdefault(canonical_json(config), config)
    return list(seen.values())
