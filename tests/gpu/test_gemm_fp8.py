"""The FP8 (e4m3) GEMM on a real GPU: per-tensor scales, fp16/bf16/fp32 outputs, ragged sizes,
the cluster, TMA-store, ping-pong and split-K variants; each run through the measuring worker
(its error against the fp32 product before quantization, within the e4m3 bound) and checked
tightly against the product of the dequantized inputs (what the kernel itself must get right);
and a bf16 problem with fp8=true, whose e4m3 configs cost more error than its native ones.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tests.conftest import require
from tests.gpu.test_gemm_cuda import BACKEND, QUICK, SPEC, TARGET
from tuner.workers import Job, SpecRef, Status
from tuner.workers.cuda_launch import launcher
from tuner.workers.cuda_measure import error_metrics, poison
from tuner.workers.cuda_runtime import gpu_count

pytestmark = pytest.mark.gpu

BIG = {"block_m": 128, "block_n": 256, "block_k": 128, "stages": 4, "consumers": 2, "cluster": 2,
       "persistent": True, "raster": "m", "epilogue": "direct", "split_k": 1, "schedule": "cooperative",
       "precision": "e4m3"}
CONFIGS = [BIG, BIG | {"stages": 3, "epilogue": "tma_half"}, BIG | {"cluster": 1, "persistent": False, "raster": "n"},
           BIG | {"block_m": 64, "schedule": "pingpong", "epilogue": "tma_half"},
           BIG | {"block_m": 128, "block_n": 128, "consumers": 1, "cluster": 1, "stages": 6}]
SPLIT = BIG | {"block_n": 128, "cluster": 1, "persistent": False, "split_k": 2}
SHAPES = [(512, 512, 512), (1000, 5000, 3000), (129, 264, 71), (77, 1031, 4099)]
# the output's rounding against the dequantized product (fp32: the tensor cores' FP8 accumulation)
TIGHT = {"fp16": 2e-3, "bf16": 1e-2, "fp32": 2e-3}


@pytest.fixture(scope="module", autouse=True)
def _gpu() -> None:
    require(gpu_count() > 0, "no CUDA GPU here: run bench/gpu_check.sh on a GPU machine")


def measured(config: dict, problem: dict, seed: int):
    source = SPEC.render(config, problem)
    job = Job(trial_id=seed, spec=SpecRef("gemm", "cuda"), config=config, problem=problem, target=TARGET,
              source=source, seed=seed)
    return BACKEND.measure(job, BACKEND.compile(source, TARGET), SPEC, QUICK)


def dequantized_error(config: dict, problem: dict, seed: int) -> float:
    """The kernel's error against fp32 matmul of its own (dequantized) e4m3 inputs."""
    source = SPEC.render(config, problem)
    artifact = BACKEND.compile(source, TARGET)
    inputs = SPEC.make_inputs(problem, np.random.default_rng(seed))
    spec = SPEC.output_spec(problem)
    out = torch.empty(spec.shape, dtype=getattr(torch, spec.dtype), device="cuda")
    poison(out)
    launcher(artifact.path, source, SPEC.kernel_inputs(inputs, config), out)()
    torch.cuda.synchronize()
    a, b = inputs["a8"] if "a8" in inputs else inputs["a"], inputs["b8"] if "b8" in inputs else inputs["b"]
    ref = (a.float() * inputs["a_scale"]) @ (b.float() * inputs["b_scale"]).T
    return error_metrics(out, ref)[0]


@pytest.mark.parametrize("out_dtype", ["fp16", "bf16", "fp32"])
def test_fp8_configs_are_correct_on_ragged_shapes(out_dtype: str) -> None:
    device = BACKEND.device(TARGET)
    for seed, (config, (m, n, k)) in enumerate(itertools.product(CONFIGS + [SPLIT], SHAPES)):
        problem = SPEC.validate_problem({"M": m, "N": n, "K": k, "dtype": "e4m3", "layout": "nt",
                                         "out_dtype": out_dtype})
        if SPEC.check(config, problem, device) is not None:  # split-K past its tile count, TMA rows
            config = config | {"epilogue": "direct"}
        if SPEC.check(config, problem, device) is not None:
            continue
        result = measured(config, problem, seed)
        assert result.status is Status.OK, (config, problem, result.reason)
        assert 0.02 < result.rel_l2 <= SPEC.max_error(config, problem), (config, problem, result.rel_l2)
        assert dequantized_error(config, problem, seed) <= TIGHT[out_dtype], (config, problem)


def test_a_bf16_problem_with_fp8_puts_both_precisions_on_one_front() -> None:
    problem = SPEC.validate_problem({"M": 1024, "N": 2048, "K": 4096, "layout": "nt", "fp8": True})
    native = measured(BIG | {"block_k": 64, "precision": "native"}, problem, 1)
    fp8 = measured(BIG, problem, 2)
    assert native.status is Status.OK and fp8.status is Status.OK, (native.reason, fp8.reason)
    assert native.rel_l2 <= 1e-2 < fp8.rel_l2 <= 0.05  # FP8's quantization, against the same product
    assert dequantized_error(BIG, problem, 3) <= TIGHT["bf16"]
