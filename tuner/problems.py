"""The nearest-problem rule, as pure functions: which tuned problem answers for an untuned one.

The service (`tuner best`, the REST API), the exported C header and the runtime's bundles all
apply this one rule, so they agree on every answer. No I/O here: a bundle on a machine with no
database imports this module alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def problem_distance(asked: Mapping[str, Any], tuned: Mapping[str, Any]) -> float | None:
    """How far a tuned problem is from the asked one, or ``None`` when they are not comparable.

    Problems are comparable when they have the same parameters and every non-size parameter
    (dtype, causal, ...) is equal. Positive int parameters are sizes; the distance is the sum
    over them of ``|log2(a / b)|``, so doubling any one dimension costs 1.
    """
    if asked.keys() != tuned.keys():
        return None
    total = 0.0
    for name, a in asked.items():
        b = tuned[name]
        if _is_size(a) and _is_size(b):
            total += abs(math.log2(a) - math.log2(b))  # a / b overflows a float for huge ints
        elif a != b:
            return None
    return total


def nearest_problem(asked: Mapping[str, Any],
            tuned: Iterable[tuple[Mapping[str, Any], float, T]]) -> tuple[T, float] | None:
    """The closest comparable of ``(problem, best latency, item)`` triples and its distance;
    ties go to the faster one; ``None`` when none is comparable."""
    ranked = []
    for problem, latency, item in tuned:
        distance = problem_distance(asked, problem)
        if distance is not None:
            ranked.append((distance, latency, item))
    if not ranked:
        return None
    distance, _, item = min(ranked, key=lambda r: (r[0], r[1]))
    return item, distance


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
