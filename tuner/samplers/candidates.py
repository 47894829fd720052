"""The valid configs of a template, enumerated once, and their encoding for a surrogate model.

Sampling inside the constraints rather than proposing and rejecting: the product of the choices
is walked through the template's own ``check`` (the same gate as the study loop's), so a sampler
that picks from here never proposes an invalid config. A product too large to walk is sampled
instead (a seeded, uniform pool of valid configs).

The encoding knows that numbers are ordered: each numeric parameter gives its value, its log2,
its alignment (the largest power of two dividing it: what coalescing and bank conflicts see) and
its odd part (1 for a power of two: a wavefront-sized block, a tile that divides evenly);
booleans are 0/1 and other choices one-hot.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.kernel_templates import Device, KernelSpec, Problem

from ..search_space import rejection

WALK_LIMIT = 200_000  # product sizes up to this are walked whole
POOL_SIZE = 20_000  # otherwise: this many valid configs drawn at random


@dataclass(frozen=True)
class CandidateSet:
    names: tuple[str, ...]
    configs: tuple[tuple[Any, ...], ...]  # valid configs, values in ``names`` order
    features: np.ndarray  # one row per config
    ranks: np.ndarray  # each value's position among its parameter's choices: for neighbourhoods
    complete: bool  # every valid config is here (the product was walked whole)

    def __len__(self) -> int:
        return len(self.configs)

    def index(self) -> dict[tuple[Any, ...], int]:
        return {c: i for i, c in enumerate(self.configs)}

    def neighbours(self, i: int) -> np.ndarray:
        """Configs one move from config ``i``: one parameter set to another of its choices."""
        return np.flatnonzero((self.ranks != self.ranks[i]).sum(axis=1) == 1)


def valid_configs(spec: KernelSpec, problem: Problem, device: Device, seed: int | None = None) -> CandidateSet:
    names = tuple(p.name for p in spec.params)
    choices = [tuple(p.choices) for p in spec.params]
    size = math.prod(len(c) for c in choices)
    complete = size <= WALK_LIMIT
    if complete:
        pool: Sequence[tuple[Any, ...]] = list(itertools.product(*choices))
    else:
        rng = np.random.default_rng(seed)
        pool = list({tuple(c[rng.integers(len(c))] for c in choices) for _ in range(5 * POOL_SIZE)})
    configs = tuple(v for v in pool if rejection(spec, dict(zip(names, v, strict=True)), problem, device) is None)
    if not complete:
        configs = configs[:POOL_SIZE]
    ranks = np.array([[c.index(v) for c, v in zip(choices, config, strict=True)] for config in configs],
                     dtype=np.int64).reshape(len(configs), len(names))
    return CandidateSet(names, configs, encode(choices, configs), ranks, complete)


def encode(choices: Sequence[tuple[Any, ...]], configs: Sequence[tuple[Any, ...]]) -> np.ndarray:
    columns: list[np.ndarray] = []
    for j, options in enumerate(choices):
        if len(options) < 2:
            continue  # a fixed parameter says nothing
        values = [config[j] for config in configs]
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
    if not columns:
        return np.zeros((len(configs), 1))
    return np.stack(columns, axis=1)
