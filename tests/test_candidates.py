"""The encoding of the valid configs that the default sampler's surrogate sees."""

from __future__ import annotations

import numpy as np

from tests.test_samplers import DEVICE, SPEC
from tuner.samplers.candidates import products, valid_configs


def test_the_product_of_two_integer_knobs_is_a_feature():
    """Threads per block (block x tile) is one column, so one split of a tree can see it."""
    candidates = valid_configs(SPEC, {}, DEVICE)
    block, tile = candidates.names.index("block"), candidates.names.index("tile")
    threads = np.log2([c[block] * c[tile] for c in candidates.configs])
    assert any(np.array_equal(column, threads) for column in candidates.features.T)


def test_products_pair_only_integer_knobs_of_more_than_two_choices_and_keep_absence():
    choices = [(1, 2, 4), (8, 16, 32), (0, 1, 2), (True, False), ("a", "b", "c")]
    options, values = products(choices, [(2, 16, 1, True, "a"), (None, 8, 2, False, "b")])
    assert values == [(32,), (None,)]
    assert options == [(8, 16, 32, 64, 128)]
