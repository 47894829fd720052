"""The Hopper GEMM on a real GPU (bench/gpu_check.sh runs it on the device): every layout and dtype,
ragged sizes that leave partial tiles on every edge (and rows of odd length, stored padded), the
cluster, persistent, TMA-store (whole and half buffers), ping-pong, split-K and stream-K variants,
against fp32 torch.matmul; the launcher's tensor maps, cluster launch, persistent grid and
stream-K's workspace (left clean for the next launch); output poisoning for integer outputs.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tests.conftest import require
from tuner.kernel_templates import Target, find_spec
from tuner.workers import Job, SpecRef, Status, TimingPolicy, get_backend
from tuner.workers.cuda_launch import launcher
from tuner.workers.cuda_measure import poison
from tuner.workers.cuda_runtime import gpu_count

pytestmark = pytest.mark.gpu

ARCH = "sm_90a"
TARGET = Target.documented(ARCH)
SPEC = find_spec("gemm", ARCH)
BACKEND = get_backend("cuda")
QUICK = TimingPolicy(warmup_s=0.002, budget_s=0.005, min_repeats=20)
BIG = {"block_m": 128, "block_n": 256, "block_k": 64, "stages": 4, "consumers": 2, "cluster": 2,
       "persistent": True, "raster": "m", "epilogue": "direct", "split_k": 1, "schedule": "cooperative"}
CONFIGS = [
    BIG,
    BIG | {"stages": 3, "epilogue": "tma"},
    BIG | {"cluster": 1, "persistent": False, "raster": "n"},
    {"block_m": 256, "block_n": 128, "block_k": 64, "stages": 3, "consumers": 2, "cluster": 2,
     "persistent": False, "raster": "n", "epilogue": "tma"},
    {"block_m": 128, "block_n": 128, "block_k": 64, "stages": 4, "consumers": 1, "cluster": 1,
     "persistent": True, "raster": "m", "epilogue": "direct"},
    {"block_m": 64, "block_n": 128, "block_k": 64, "stages": 6, "consumers": 1, "cluster": 2,
     "persistent": True, "raster": "n", "epilogue": "tma"},
]
PINGPONG = [BIG | {"block_m": 64, "schedule": "pingpong", "epilogue": "tma"},
            BIG | {"block_n": 128, "schedule": "pingpong", "epilogue": "tma_half", "stages": 6, "raster": "n"},
            BIG | {"block_m": 64, "schedule": "pingpong", "cluster": 1, "stages": 5}]
CONFIGS = [config | {"split_k": 1, "schedule": "cooperative"} for config in CONFIGS]
WIDE = [BIG | {"block_n": 192, "cluster": 1, "epilogue": "tma"},  # 192 columns: a tile of 3 x 64-column chunks
        BIG | {"block_n": 192, "cluster": 1, "persistent": False, "stages": 5}]
CONFIGS += PINGPONG + WIDE + [BIG | {"epilogue": "tma_half"}]
SPLIT = [BIG | {"block_n": 128, "cluster": 1, "persistent": False, "split_k": 2, "stages": 4},
         {"block_m": 64, "block_n": 128, "block_k": 64, "stages": 6, "consumers": 1, "cluster": 1,
          "persistent": False, "raster": "n", "epilogue": "tma", "split_k": 2, "schedule": "cooperative"}]
# few tiles, long K: split-K's shapes (odd K leaves the halves unequal and the last block ragged)
SPLIT_SHAPES = [(512, 512, 8192), (200, 136, 1000), (64, 264, 129)]
SHAPES = [(512, 512, 512), (1000, 5000, 3000), (129, 257, 71), (77, 1031, 4099), (8, 8, 8)]
_STREAMED = BIG | {"cluster": 1, "stream_k": True}
STREAM_K = [_STREAMED | {"epilogue": "tma_half"}, _STREAMED,
            _STREAMED | {"block_n": 128, "consumers": 1, "stages": 6, "raster": "n"},
            _STREAMED | {"block_m": 256, "block_n": 128, "stages": 3, "epilogue": "tma"},
            _STREAMED | {"block_n": 192, "epilogue": "tma"}]
# the odd rows (a part-empty last wave on 132 SMs: 288 and 160 tiles of 128x256), few tiles with long K
# (8 and 4 of 128x256 over every SM: a tile's K shared by 16-33 blocks; 5 tiles of 16 K blocks, fewer
# units than blocks), a ragged edge everywhere
STREAM_K_SHAPES = [(3000, 3000, 3000), (1000, 5000, 3000), (512, 512, 4099), (129, 257, 4099), (77, 1031, 999)]


@pytest.fixture(scope="module", autouse=True)
def _gpu() -> None:
    require(gpu_count() > 0, "no CUDA GPU here: run bench/gpu_check.sh on a GPU machine")


def run(config: dict, problem: dict, seed: int = 0):
    problem = SPEC.validate_problem(problem)
    source = SPEC.render(config, problem)
    job = Job(trial_id=seed, spec=SpecRef("gemm", "cuda"), config=config, problem=problem, target=TARGET,
              source=source, seed=seed)
    return BACKEND.measure(job, BACKEND.compile(source, TARGET), SPEC, QUICK)


@pytest.mark.parametrize("dtype,layout", list(itertools.product(("fp16", "bf16"), ("nn", "nt"))))
def test_configs_are_correct_on_ragged_shapes(dtype: str, layout: str) -> None:
    device = BACKEND.device(TARGET)
    for seed, (config, (m, n, k)) in enumerate(itertools.product(CONFIGS, SHAPES)):
        problem = {"M": m, "N": n, "K": k, "dtype": dtype, "layout": layout}
        if n % 8:  # rows TMA cannot store: the register epilogue's clipped stores
            config = config | {"epilogue": "direct"}
        assert SPEC.check(config, SPEC.validate_problem(problem), device) is None, config
        result = run(config, problem, seed)
        assert result.status is Status.OK, (config, problem, result.reason)
        assert result.rel_l2 <= SPEC.max_error(config, problem), (config, problem, result.rel_l2)


@pytest.mark.parametrize("dtype,layout", list(itertools.product(("fp16", "bf16"), ("nn", "nt"))))
def test_split_k_adds_the_halves_of_k(dtype: str, layout: str) -> None:
    device = BACKEND.device(TARGET)
    for seed, (config, (m, n, k)) in enumerate(itertools.product(SPLIT, SPLIT_SHAPES)):
        problem = {"M": m, "N": n, "K": k, "dtype": dtype, "layout": layout}
        assert SPEC.check(config, SPEC.validate_problem(problem), device) is None, (config, problem)
        result = run(config, problem, seed)
        assert result.status is Status.OK, (config, problem, result.reason)
        assert result.rel_l2 <= SPEC.max_error(config, problem), (config, problem, result.rel_l2)


@pytest.mark.parametrize("dtype,layout", list(itertools.product(("fp16", "bf16"), ("nn", "nt"))))
def test_stream_k_adds_the_parts_of_the_last_wave(dtype: str, layout: str) -> None:
    device = BACKEND.device(TARGET)
    for seed, (config, (m, n, k)) in enumerate(itertools.product(STREAM_K, STREAM_K_SHAPES)):
        problem = {"M": m, "N": n, "K": k, "dtype": dtype, "layout": layout}
        if n % 8:
            config = config | {"epilogue": "direct"}
        assert SPEC.check(config, SPEC.validate_problem(problem), device) is None, (config, problem)
        result = run(config, problem, seed)
        assert result.status is Status.OK, (config, problem, result.reason)
        assert result.rel_l2 <= SPEC.max_error(config, problem), (config, problem, result.rel_l2)


@pytest.mark.parametrize("shape", [(3000, 3000, 3000), (129, 257, 4099)])
def test_stream_k_launches_again_and_again_on_its_workspace(shape: tuple[int, int, int]) -> None:
    """Every launch right, back to back on one stream (the owners clear the flags for the next) and on
    a second stream (a workspace of its own, launches in flight on both at once)."""
    m, n, k = shape
    problem = SPEC.validate_problem({"M": m, "N": n, "K": k, "dtype": "bf16"})
    config = STREAM_K[0] if n % 8 == 0 else STREAM_K[1]
    source = SPEC.render(config, problem)
    artifact = BACKEND.compile(source, TARGET)
    inputs = SPEC.make_inputs(problem, np.random.default_rng(1))
    ref = SPEC.reference(inputs, problem)
    outs = [torch.empty(m, n, dtype=torch.bfloat16, device="cuda") for _ in range(2)]
    side = torch.cuda.Stream()
    launches = [launcher(artifact.path, source, inputs, outs[0])]
    with torch.cuda.stream(side):
        launches.append(launcher(artifact.path, source, inputs, outs[1]))
    assert launches[0].grid[0] == min(source.grid[0], torch.cuda.get_device_properties(0).multi_processor_count)
    for _ in range(5):
        for out in outs:
            poison(out)
        torch.cuda.synchronize()
        launches[0]()
        launches[1]()  # on the side stream, beside the first
        launches[0]()
        torch.cuda.synchronize()
        for out in outs:
            assert float((out.float() - ref).norm() / ref.norm()) < SPEC.max_error(config, problem)


def test_persistent_grid_is_clamped_to_resident_clusters() -> None:
    problem = SPEC.validate_problem({"M": 8192, "N": 8192, "K": 128})
    source = SPEC.render(BIG, problem)
    artifact = BACKEND.compile(source, TARGET)
    inputs = SPEC.make_inputs(problem, np.random.default_rng(0))
    out = torch.empty(8192, 8192, dtype=torch.bfloat16, device="cuda")
    launch = launcher(artifact.path, source, inputs, out)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert source.grid[0] == 64 * 32 and launch.grid[0] <= sms and launch.grid[0] % 2 == 0
    launch()
    torch.cuda.synchronize()
    ref = SPEC.reference(inputs, problem)
    assert float((out.float() - ref).norm() / ref.norm()) < SPEC.max_error(BIG, problem)


def test_poison_fills_floats_with_nan_and_integers_with_a_sentinel() -> None:
    floats, ints = torch.zeros(4, device="cuda", dtype=torch.bfloat16), torch.zeros(4, device="cuda", dtype=torch.int32)
    poison(floats), poison(ints)
    assert bool(floats.isnan().all()) and bool((ints == torch.iinfo(torch.int32).max).all())
