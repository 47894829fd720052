import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tuner.pareto import dominates, evictions, non_dominated


def brute_force(points: np.ndarray) -> np.ndarray:
    return np.array([not any(dominates(q, p) for q in points) for p in points], dtype=bool)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 40), st.just(2)),
              elements=st.sampled_from([0.0, 1e-7, 1e-3, 0.5, 1.0, 2.0, 3.0])))
def test_sweep_matches_the_definition(points):
    assert np.array_equal(non_dominated(points), brute_force(points))


def test_duplicates_of_a_front_point_all_stay_on_it():
    points = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 0.5], [2.0, 2.0]])
    assert non_dominated(points).tolist() == [True, True, True, False]


def test_rejects_wrong_shapes():
    import pytest

    with pytest.raises(ValueError):
        non_dominated(np.zeros((3, 3)))


@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), max_size=30))
def test_offering_points_one_by_one_builds_the_non_dominated_set(raw):
    points = np.array(raw, dtype=np.float64).reshape(-1, 2)
    front: list[int] = []
    for i, point in enumerate(points):
        evicted = evictions(tuple(point), points[front])
        if evicted is not None:
            front = [j for j, out in zip(front, evicted, strict=True) if not out] + [i]
    assert sorted(front) == np.flatnonzero(non_dominated(points)).tolist()
