"""Pareto fronts of (latency, error) pairs, both minimised. Pure functions over arrays: no I/O."""

from __future__ import annotations

import numpy as np


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of an (n, 2) array that no other row dominates.

    Row a dominates row b when a is no worse in both columns and better in one. Equal rows do
    not dominate each other, so duplicates of a front point are all on the front.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"expected an (n, 2) array, got shape {pts.shape}")
    mask = np.zeros(len(pts), dtype=bool)
    # Sweep in order of latency, then error: a row is on the front iff its error is below every
    # error seen at a strictly smaller latency, and minimal among rows of its own latency.
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    best_error = np.inf
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and pts[order[j], 0] == pts[order[i], 0]:
            j += 1
        group = order[i:j]
        group_min = pts[group[0], 1]  # lexsort put the smallest error of this latency first
        if group_min < best_error:
            mask[group[pts[group, 1] == group_min]] = True
            best_error = group_min
        i = j
    return mask


def evictions(point: tuple[float, float], front: np.ndarray) -> np.ndarray | None:
    """Offering ``point`` to ``front`` (rows no other row dominates): ``None`` when a row
    dominates it, else the mask of the rows it dominates, which leave the front as it joins."""
    mask = non_dominated(np.vstack([np.asarray(front, dtype=np.float64).reshape(-1, 2), point]))
    return ~mask[:-1] if mask[-1] else None


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))
