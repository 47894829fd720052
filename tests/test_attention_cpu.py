"""The CPU attention template: its constraints and reference, and every interesting variant
compiled with the real C compiler, run and verified by the real CPU worker."""

from __future__ import annotations

import itertools
import math
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import require
from tuner.kernel_templates import Device, Target, find_spec
from tuner.workers import Job, SpecRef, Status, TimingPolicy, get_backend

SPEC = find_spec("attention", "cpu")
BACKEND = get_backend("cpu")
CPU = Target.documented("cpu")
QUICK = TimingPolicy(warmup_s=0.001, budget_s=0.005, min_repeats=3, flush_l2=False)
BASE = dict(block_m=16, block_n=32, unroll=4, threads=1, accum="float", exp="libm",
            fast_math=False, march="generic")
RAGGED_CAUSAL = dict(B=1, H=2, S=77, D=32, causal=True)
SQUARE = dict(B=2, H=1, S=64, D=64, causal=False)
ODD = dict(B=1, H=3, S=45, D=20, causal=False)  # D and S leave remainders after every unroll
GQA = dict(B=2, H=6, H_kv=2, S=45, D=20, causal=True)  # query heads 0-2 read K/V head 0, 3-5 head 1

# (config changes, problem, the largest relative L2 error allowed, the smallest one expected)
VARIANTS = [
    ({}, RAGGED_CAUSAL, 1e-5, 0.0),
    ({}, SQUARE, 1e-5, 0.0),
    (dict(accum="double"), RAGGED_CAUSAL, 1e-7, 0.0),
    (dict(exp="poly3"), RAGGED_CAUSAL, 5e-4, 1e-6),
    (dict(exp="poly2"), RAGGED_CAUSAL, 5e-3, 2e-4),
    (dict(exp="poly2", accum="double"), SQUARE, 5e-3, 2e-4),
    (dict(fast_math=True, march="native"), RAGGED_CAUSAL, 1e-5, 0.0),
    (dict(fast_math=True, march="native", exp="poly3"), SQUARE, 5e-4, 1e-6),
    (dict(threads=2, block_m=8, block_n=16, unroll=1), RAGGED_CAUSAL, 1e-5, 0.0),
    (dict(block_m=64, block_n=128, unroll=8), RAGGED_CAUSAL, 1e-5, 0.0),
    (dict(block_m=8, block_n=16, accum="double", fast_math=True), SQUARE, 1e-7, 0.0),
    (dict(unroll=8), ODD, 1e-5, 0.0),
    (dict(unroll=8, exp="poly3", fast_math=True), dict(ODD, causal=True), 5e-4, 1e-6),
    ({}, GQA, 1e-5, 0.0),
    (dict(threads=2, block_m=8, block_n=16), dict(GQA, H_kv=1, causal=False), 1e-5, 0.0),
]


def problem(**values):
    return SPEC.validate_problem(values)


@pytest.fixture(scope="module")
def artifacts():
    """Every variant's source and artifact, compiled in parallel (compiles dominate the runtime)."""
    require(shutil.which("cc") is not None, "no C compiler `cc` on PATH")
    sources = [SPEC.render(BASE | changes, problem(**shape)) for changes, shape, _, _ in VARIANTS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(zip(sources, pool.map(lambda source: BACKEND.compile(source, CPU), sources), strict=True))


@pytest.mark.parametrize("index", range(len(VARIANTS)), ids=lambda i: f"{VARIANTS[i][0]}-S{VARIANTS[i][1]['S']}")
def test_variant_runs_and_verifies(artifacts, index):
    changes, shape, most, least = VARIANTS[index]
    source, artifact = artifacts[index]
    config, full = BASE | changes, problem(**shape)
    assert SPEC.check(config, full, BACKEND.device(CPU)) is None
    job = Job(index, SpecRef("attention", "cpu"), config, full, CPU, source, seed=index)
    result = BACKEND.measure(job, artifact, SPEC, QUICK)
    assert result.status is Status.OK, result.reason
    assert least <= result.rel_l2 <= most
    assert result.timing.median_s > 0 and result.timing.repeats >= QUICK.min_repeats


def test_reference_matches_the_definition_row_by_row():
    shape = problem(B=1, H=2, S=5, D=3, causal=True)
    inputs = SPEC.make_inputs(shape, np.random.default_rng(0))
    out = SPEC.reference(inputs, shape)
    q, k, v = (inputs[name].astype(np.float64) for name in ("q", "k", "v"))
    for h in range(2):
        for i in range(5):
            scores = np.array([q[0, h, i] @ k[0, h, j] / math.sqrt(3) for j in range(i + 1)])
            weights = np.exp(scores) / np.exp(scores).sum()
            np.testing.assert_allclose(out[0, h, i], weights @ v[0, h, : i + 1], rtol=1e-12)


def test_grouped_query_reference_is_attention_over_the_shared_heads():
    shape = problem(**GQA)
    inputs = SPEC.make_inputs(shape, np.random.default_rng(0))
    assert inputs["q"].shape == (2, 6, 45, 20) and inputs["k"].shape == inputs["v"].shape == (2, 2, 45, 20)
    repeated = {"q": inputs["q"], "k": np.repeat(inputs["k"], 3, axis=1), "v": np.repeat(inputs["v"], 3, axis=1)}
    mha = problem(**(GQA | {"H_kv": 0}))
    np.testing.assert_array_equal(SPEC.reference(inputs, shape), SPEC.reference(repeated, mha))
    assert SPEC.bytes_moved(shape) == 4 * 2 * 45 * 20 * (2 * 6 + 2 * 2)
    assert "H=6 is not a multiple of H_kv=4" in SPEC.check(BASE, problem(**(GQA | {"H_kv": 4})), CPU)
    # H_kv is left out where it is 0 or H: problems and names stored before it existed stay the same
    assert "H_kv" not in problem(H=6) and problem(H=6, H_kv=6) == problem(H=6)


def test_inputs_are_fresh_random_float32():
    shape = problem(S=16, D=8)
    first = SPEC.make_inputs(shape, np.random.default_rng(1))
    second = SPEC.make_inputs(shape, np.random.default_rng(2))
    assert first["q"].dtype == np.float32 and first["q"].shape == (1, 4, 16, 8)
    assert np.count_nonzero(first["k"]) == first["k"].size
    assert not np.array_equal(first["v"], second["v"])


def test_flops_halve_under_causal_mask_and_bytes_count_four_tensors():
    assert SPEC.flops(problem(B=2, H=3, S=10, D=4)) == 4 * 2 * 3 * 100 * 4
    assert SPEC.flops(problem(B=2, H=3, S=10, D=4, causal=True)) == 2 * 2 * 3 * 100 * 4
    assert SPEC.bytes_moved(problem(B=2, H=3, S=10, D=4)) == 4 * 4 * 2 * 3 * 10 * 4


def test_check_gives_reasons():
    two_cores = Device("cpu", limits={"cores": 2})
    assert SPEC.check(BASE, problem(), two_cores) is None
    assert "exceeds the 1 cores" in SPEC.check(BASE | dict(threads=2), problem(), Device("cpu", limits={"cores": 1}))
    assert "block_m=16 already covers" in SPEC.check(BASE | dict(block_m=64), problem(S=10), two_cores)
    # a sequence shorter than every tile still has a valid config: the smallest tiles
    assert SPEC.check(BASE | dict(block_m=8, block_n=16), problem(S=3), two_cores) is None
    big = BASE | dict(block_m=64, block_n=128, accum="double")
    assert "KiB" in SPEC.check(big, problem(D=512), two_cores)


def test_render_bakes_the_knobs_and_passes_the_shape():
    source = SPEC.render(BASE | dict(fast_math=True, march="native", exp="poly2"), problem(S=50, D=16))
    assert "#define HEAD_DIM 16\n" in source.code and "#define EXP_DEGREE 2\n" in source.code
    assert {"-ffast-math", "-march=native", "-fopenmp"} <= set(source.options)
    assert source.scalars[:3] == (("int32", 1), ("int32", 4), ("int32", 50))
    assert source.scalars[3][1] == pytest.approx(0.25)


# Causal shapes where key tiles start inside and past a query tile: ragged (77) and a multiple
# of every tile (256). D is small so a run is quick; S is a scalar, so both shapes share binaries.
CAUSAL_SHAPES = [dict(B=1, H=2, S=77, D=16, causal=True), dict(B=1, H=1, S=256, D=16, causal=True)]
TILING = ("block_m", "block_n", "unroll")


def admitted_tilings(shape: dict) -> list[dict]:
    """Every (block_m, block_n, unroll) the constraints admit for ``shape``, the other knobs at
    BASE: the masking and the tile loops (what a causal shape exercises) depend on these alone;
    VARIANTS covers the exp, accumulation and compiler-flag knobs."""
    choices = [next(p.choices for p in SPEC.params if p.name == name) for name in TILING]
    configs = [BASE | dict(zip(TILING, values, strict=True)) for values in itertools.product(*choices)]
    device = Device("cpu", limits={"cores": 1})
    return [config for config in configs if SPEC.check(config, problem(**shape), device) is None]


def test_every_admitted_tiling_is_exact_at_causal_shapes():
    """With block_n < block_m a causal key tile can start after a query row; the kernel once
    masked s[-1] (another row's scores) there, and 4 of 50 trials of the README's causal run
    were wrong_result. Every admitted tiling must verify."""
    require(shutil.which("cc") is not None, "no C compiler `cc` on PATH")
    cases = [(config, problem(**shape)) for shape in CAUSAL_SHAPES for config in admitted_tilings(shape)]
    assert len(cases) == 2 * 4 * 4 * 4  # no tile covers S=77 or 256 more than needed: all admitted
    sources = [SPEC.render(config, full) for config, full in cases]
    with ThreadPoolExecutor(max_workers=2) as pool:
        artifacts = list(pool.map(lambda source: BACKEND.compile(source, CPU), sources))
    wrong = []
    for index, ((config, full), source, artifact) in enumerate(zip(cases, sources, artifacts, strict=True)):
        job = Job(index, SpecRef("attention", "cpu"), config, full, CPU, source, seed=index)
        result = BACKEND.measure(job, artifact, SPEC, QUICK)
        if result.status is not Status.OK or result.rel_l2 > 1e-5:
            wrong.append((full["S"], {k: config[k] for k in TILING}, result.status.value, result.rel_l2))
    assert not wrong, wrong
