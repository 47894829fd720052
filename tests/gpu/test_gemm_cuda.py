"""The Hopper GEMM on a real GPU (bench/gpu_check.sh runs it on the device): every layout and dtype,
ragged sizes that leave partial tiles on every edge (and rows of odd length, stored padded), the
cluster, persistent, TMA-store (whole and half buffers), ping-pong and split-K variants, against
fp32 torch.matmul; the launcher's tensor maps, cluster launch and persistent grid; output
poisoning for integer outputs.
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
CONFIGS += PINGPONG + [BIG | {"epilogue": "tma_half"}]
SPLIT = [BIG | {"block_n": 128, "cluster": 1, "persistent": False, "split_k": 2, "stages": 4},
         {"block_m": 64, "block_n": 128, "block_k": 64, "stages": 6, "consumers": 1, "cluster": 1,
          "persistent": False, "raster": "n", "epilogue": "tma", "split_k": 2, "schedule": "cooperative"}]
# few tiles, long K: split-K's shapes (odd K leaves the halves unequal and the last block ragged)
SPLIT_SHAPES = [(512, 512, 8192), (200, 136, 1000), (64, 264, 129)]
SHAPES = [(512, 512, 512), (1000, 5000, 3000), (129, 257, 71), (77, 1031, 4099), (8, 8, 8)]


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
