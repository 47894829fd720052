"""The CUDA attention kernel and worker on a real GPU (run by bench/gpu_check.sh on the device).

Correctness over every dtype, head dim, causal flag and a ragged S; the worker's timing against
Triton's do_bench on the same launch; the spread of repeated measurements; failures as data.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import statistics
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import require
from tuner.kernel_templates import Target, find_spec
from tuner.workers import Job, SpecRef, Status, TimingPolicy, get_backend
from tuner.workers.cuda_launch import launcher
from tuner.workers.cuda_measure import time_launches
from tuner.workers.cuda_runtime import gpu_count

pytestmark = pytest.mark.gpu

ARCH = "sm_90a"
TARGET = Target.documented(ARCH)
SPEC = find_spec("attention", ARCH, "mma_sync")
BACKEND = get_backend("cuda")
# The fastest exact config of the sweep on the default problem (bench/results/gpu_bench.log).
DEFAULT = {"block_m": 128, "block_n": 64, "warps": 4, "stages": 3, "precision": "exact", "rescale": "always",
           "occupancy": 8}
EDGE_TILES = [
    # FlashAttention-2's D=128 tile: 192 accumulators, spilling a few bytes (lazy rescale, fast exp2 only)
    DEFAULT | {"stages": 2, "precision": "fast_exp2", "rescale": "lazy"},
    # two 8-warp blocks per SM: 128 registers a thread
    DEFAULT | {"warps": 8, "stages": 2, "occupancy": 16},
]
QUICK = TimingPolicy(warmup_s=0.002, budget_s=0.005, min_repeats=20)
PROBLEMS = [{"B": 2, "H": 3, "S": s, "D": d, "causal": c, "dtype": t}
            for s, d, c, t in itertools.product((512, 1000), (64, 128), (False, True), ("fp16", "bf16"))]
EXACT_BOUND = {"fp16": 2e-3, "bf16": 1e-2}


@pytest.fixture(scope="module", autouse=True)
def _gpu() -> None:
    require(gpu_count() > 0, "no CUDA GPU here: run bench/gpu_check.sh on a GPU machine")
    sources = [SPEC.render(c, SPEC.validate_problem(p)) for p in PROBLEMS for c in sample_configs(p, 6)]
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:  # fills the compile cache at once
        list(pool.map(lambda source: BACKEND.compile(source, TARGET), sources))


def run(config: dict, problem: dict, seed: int = 0, policy: TimingPolicy = QUICK, target: Target = TARGET,
        source=None):
    problem = SPEC.validate_problem(problem)
    source = source or SPEC.render(config, problem)
    artifact = BACKEND.compile(source, target)
    job = Job(trial_id=seed, spec=SpecRef("attention", "cuda"), config=config, problem=problem,
              target=target, source=source, seed=seed)
    return BACKEND.measure(job, artifact, SPEC, policy)


def sample_configs(problem: dict, count: int) -> list[dict]:
    """``count`` admitted configs spread evenly over the space, exact and inexact alike."""
    names = [p.name for p in SPEC.params]
    device = BACKEND.device(TARGET)
    every = [dict(zip(names, v, strict=True)) for v in itertools.product(*(p.choices for p in SPEC.params))]
    ok = [c for c in every if SPEC.check(c, SPEC.validate_problem(problem), device) is None]
    return ok[::max(1, len(ok) // count)][:count]


def problem_id(p: dict) -> str:
    return "S{S}-D{D}-{dtype}-{c}".format(c="causal" if p["causal"] else "full", **p)


@pytest.mark.parametrize("problem", PROBLEMS, ids=problem_id)
def test_sampled_configs_are_correct(problem: dict) -> None:
    for seed, config in enumerate(sample_configs(problem, 6)):
        result = run(config, problem, seed)
        assert result.status is Status.OK, (config, result.reason)
        if config["precision"] == "exact":
            assert result.rel_l2 <= EXACT_BOUND[problem["dtype"]], (config, result.rel_l2)
        assert result.timing.repeats >= 20 and result.timing.q1_s <= result.timing.median_s


@pytest.mark.parametrize("problem", PROBLEMS, ids=problem_id)
def test_edge_tiles_are_correct(problem: dict) -> None:
    device, checked = BACKEND.device(TARGET), SPEC.validate_problem(problem)
    for config in EDGE_TILES:
        if SPEC.check(config, checked, device) is None:
            result = run(config, problem)
            assert result.status is Status.OK, (config, result.reason)
            assert result.rel_l2 <= SPEC.max_error(config, checked), (config, result.rel_l2)


def test_default_problem_is_correct_and_timed() -> None:
    result = run(DEFAULT, {}, policy=TimingPolicy())
    assert result.status is Status.OK, result.reason
    assert result.rel_l2 <= 2e-3
    print(f"\ndefault problem: median {result.timing.median_s * 1e6:.1f} us, "
          f"{SPEC.flops(SPEC.default_problem()) / result.timing.median_s / 1e12:.1f} TFLOP/s, "
          f"rel_l2 {result.rel_l2:.2e}, clock {result.timing.clock_mhz} MHz")


def test_timing_agrees_with_triton_do_bench() -> None:
    import torch
    from triton.testing import do_bench

    problem = SPEC.default_problem()
    source = SPEC.render(DEFAULT, problem)
    artifact = BACKEND.compile(source, TARGET)
    inputs = SPEC.make_inputs(problem, __import__("numpy").random.default_rng(1))
    out = torch.empty(SPEC.output_spec(problem).shape, dtype=torch.float16, device="cuda")
    launch = launcher(artifact.path, source, inputs, out)
    ours = statistics.median(time_launches(launch, out, TimingPolicy()))
    theirs = do_bench(launch, warmup=25, rep=100, return_mode="median") / 1e3
    print(f"\nworker {ours * 1e6:.1f} us, do_bench {theirs * 1e6:.1f} us")
    assert abs(ours - theirs) / theirs < 0.03


def test_repeated_measurement_is_stable() -> None:
    timings = [run(DEFAULT, {}, 0, TimingPolicy()).timing for _ in range(5)]
    medians = [t.median_s for t in timings]
    spread = statistics.stdev(medians) / statistics.mean(medians)
    print(f"\nmedians {[round(m * 1e6, 1) for m in medians]} us, IQRs {[round(t.iqr_s * 1e6, 1) for t in timings]} us, "
          f"CV {spread:.2%}")
    assert spread < 0.01


def test_unwritten_output_is_a_wrong_result() -> None:
    source = SPEC.render(DEFAULT, SPEC.default_problem())
    silent = dataclasses.replace(source, code=source.code.replace(
        "store_output(o, acc, row_sum, m0 + row0, seq, lane);", ""))
    result = run(DEFAULT, {}, source=silent)
    assert result.status is Status.WRONG_RESULT and "NaN" in result.reason


def test_a_cubin_for_another_arch_is_a_launch_error() -> None:
    result = run(DEFAULT, {}, target=Target.documented("sm_80"))  # sm_80 machine code does not load on sm_90
    assert result.status is Status.LAUNCH_ERROR, result.reason
