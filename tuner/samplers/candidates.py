"""The valid configs of a template, enumerated once, and their encoding for a surrogate model.

Sampling inside the constraints rather than proposing and rejecting: the product of the choices
is walked through the template's own ``check`` (the same gate as the study loop's), so a sampler
that picks from here never proposes an invalid config. A product too large to walk is sampled
instead (a seeded, uniform pool of valid configs).

Over several families the candidates are each family's valid configs, with every other family's
knobs absent (``None``; 0 in each of their features). The encoding knows that numbers are ordered:
each numeric parameter gives its value, its log2, its alignment (the largest power of two dividing
it: what coalescing and bank conflicts see) and its odd part (1 for a power of two: a wavefront-
sized block, a tile that divides evenly); booleans are 0/1 and other choices one-hot.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.kernel_templates import Device, KernelSpec, Problem

from ..search_space import branches, config_of, rejection

WALK_LIMIT = 200_000  # product sizes up to this are walked whole
POOL_SIZE = 20_000  # otherwise: this many valid configs drawn at random


@dataclass(frozen=True)
class CandidateSet:
    names: tuple[str, ...]
    configs: tuple[tuple[Any, ...], ...]  # valid configs, values in ``names`` order
    features: np.ndarray  # one row per config
    ranks: np.ndarray  # each value's position among its parameter's choices: for neighbourhoods
    complete: bool  # every valid config is here (the product was walked whole)
    groups: np.ndarray  # each config's family (its index in ``search_space.branches``; 0 for one family)

    def __len__(self) -> int:
        return len(self.configs)

    def index(self) -> dict[tuple[Any, ...], int]:
        return {c: i for i, c in enumerate(self.configs)}

    def neighbours(self, i: int) -> np.ndarray:
        """Configs one move from config ``i``: one parameter set to another of its choices."""
        return np.flatnonzero((self.ranks != self.ranks[i]).sum(axis=1) == 1)


def valid_configs(spec: KernelSpec, problem: Problem, device: Device, seed: int | None = None) -> CandidateSet:
    """Over several families (``search_space.branches``): each family's valid configs, the other
    families' knobs ``None`` (absent) in them."""
    names = tuple(p.name for p in spec.params)
    choices = [tuple(p.choices) for p in spec.params]
    parts = branches(spec)
    size = sum(math.prod(len(p.choices) for p in free) for _, free in parts)
    complete = size <= WALK_LIMIT
    rng = np.random.default_rng(seed)
    pool: list[tuple[int, dict[str, Any]]] = []
    for g, (fixed, free) in enumerate(parts):
        if complete:
            values: Sequence[tuple[Any, ...]] = list(itertools.product(*(p.choices for p in free)))
        else:  # each family's share of the pool as its share of the product
            draws = max(1, round(5 * POOL_SIZE * math.prod(len(p.choices) for p in free) / size))
            values = list({tuple(p.choices[rng.integers(len(p.choices))] for p in free) for _ in range(draws)})
        pool += [(g, fixed | dict(zip((p.name for p in free), v, strict=True))) for v in values]
    valid = [(g, params) for g, params in pool
             if rejection(spec, config_of(spec, params), problem, device) is None]
    if not complete and len(valid) > POOL_SIZE:  # evenly over the families, as drawn
        valid = valid[:POOL_SIZE] if len(parts) == 1 else [valid[i] for i in np.linspace(
            0, len(valid) - 1, POOL_SIZE).astype(int)]
    groups = np.array([g for g, _ in valid], dtype=np.int64)
    configs = tuple(tuple(params.get(name) for name in names) for _, params in valid)
    ranks = np.array([[c.index(v) if v is not None else -1 for c, v in zip(choices, config, strict=True)]
                      for config in configs], dtype=np.int64).reshape(len(configs), len(names))
    return CandidateSet(names, configs, encode(choices, configs), ranks, complete, groups)


def encode(choices: Sequence[tuple[Any, ...]], configs: Sequence[tuple[Any, ...]]) -> np.ndarray:
    columns: list[np.ndarray] = []
    for j, options in enumerate(choices):
        if len(options) < 2:
            continue  # a fixed parameter says nothing
        present = np.array([config[j] is not None for config in configs], dtype=bool)
        start = len(columns)
        values = [options[0] if config[j] is None else config[j] for config in configs]
        if all(isinstance(o, bool) for o in options):
            columns.append(np.array(values, dtype=np.float64))
        elif all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in options):
            x = np.array(values, dtype=np.float64)
            columns.append(x)
            if min(options) > 0:
                columns.append(np.log2(x))
            if all(isinstance(o, int) and o > 0 for o in options):
                ints = x.astype(np.int64)
                alignment = ints & -ints
                columns.append(np.log2(alignment).astype(np.float64))
                columns.append((ints // alignment).astype(np.float64))  # 1 for a power of two
        else:
            columns.extend(np.array([v == o for v in values], dtype=np.float64) for o in options)
        columns[start:] = [np.where(present, c, 0.0) for c in columns[start:]]  # another family's knob: 0
    if not columns:
        return np.zeros((len(configs), 1))
    return np.stack(columns, axis=1)
