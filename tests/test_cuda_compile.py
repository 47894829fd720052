"""The CUDA template compiles with nvcc, without a GPU, as production compiles it.

The slow test compiles every config check() admits, for each head dim and dtype, for sm_90a and
sm_80, and holds the resource report to check()'s promises: spills of at most MAX_SPILL_BYTES (none
but in the lazy-rescale 192-accumulator tiles), shared memory within the arch's limit. A template edit that breaks either fails here, in CI, before any GPU sees it.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from tuner.kernel_templates import find_spec
from tuner.kernel_templates.attention_cuda import MAX_SPILL_BYTES, shared_bytes
from tuner.workers import get_backend
from tuner.workers.cuda_compile import ToolchainMissing, nvcc_path

from tests.conftest import require

SPEC = find_spec("attention", "sm_90a")
BACKEND = get_backend("cuda")
DEFAULT = {"block_m": 128, "block_n": 64, "warps": 8, "stages": 2, "precision": "exact", "rescale": "always",
           "occupancy": 8}


def _has_nvcc() -> bool:
    try:
        return bool(nvcc_path())
    except ToolchainMissing:
        return False


@pytest.fixture(scope="module", autouse=True)
def _nvcc() -> None:
    require(_has_nvcc(), "nvcc is not installed (set CUDA_HOME or install the CUDA toolkit)")


def admitted(arch: str) -> list[tuple[dict, dict]]:
    """Every (config, problem) check() admits on ``arch``, over head dims and dtypes."""
    device = BACKEND.device(arch)
    names = [p.name for p in SPEC.params]
    found = []
    for values in itertools.product(*(p.choices for p in SPEC.params)):
        config = dict(zip(names, values))
        for dim, dtype in itertools.product((64, 128), ("fp16", "bf16")):
            problem = SPEC.validate_problem({"D": dim, "dtype": dtype})
            if SPEC.check(config, problem, device) is None:
                found.append((config, problem))
    return found


def test_compile_reports_resources_and_caches() -> None:
    source = SPEC.render(DEFAULT, SPEC.default_problem())
    first = BACKEND.compile(source, "sm_90a")
    assert first.error is None, first.log
    assert os.path.getsize(first.path) > 0
    assert first.resources["registers"] > 32 and first.resources["spill_store_bytes"] == 0
    again = BACKEND.compile(source, "sm_90a")
    assert again.cached and again.path == first.path and again.resources == first.resources


def test_broken_source_is_a_compile_error_not_an_exception() -> None:
    source = SPEC.render(DEFAULT, SPEC.default_problem())
    broken = BACKEND.compile(source.__class__(language="cuda", code=source.code + "\nthis is not C++;\n",
                                              entry=source.entry), "sm_80")
    assert broken.error is not None and broken.path is None
    assert "error" in broken.log


def test_check_rejects_what_cannot_run() -> None:
    problem = SPEC.validate_problem({"D": 128})
    device = BACKEND.device("sm_86")
    assert "rows per warp" in SPEC.check(DEFAULT | {"block_m": 64, "warps": 8}, problem, device)
    assert "spill" in SPEC.check(DEFAULT | {"warps": 4, "block_n": 128}, problem, device)
    big = DEFAULT | {"block_n": 128, "stages": 3}
    assert shared_bytes(big, problem) > device.limits["max_shared_bytes"]
    assert "shared memory" in SPEC.check(big, problem, device)
    bf16 = SPEC.validate_problem({"dtype": "bf16"})
    assert "fp16" in SPEC.check(DEFAULT | {"precision": "fast_exp2_f16acc"}, bf16, device)
    # two 8-warp blocks per SM cap a thread at 128 registers: too few for 128 accumulators
    assert "128 registers" in SPEC.check(DEFAULT | {"occupancy": 16, "block_n": 128}, problem, device)
    # ... and both blocks' shared memory must fit the SM (sm_86: 100 KB)
    two_blocks = DEFAULT | {"occupancy": 16, "stages": 3}
    d64 = SPEC.validate_problem({"D": 64})
    assert "blocks per SM" in SPEC.check(two_blocks, d64, device)
    assert SPEC.check(two_blocks, d64, BACKEND.device("sm_90a")) is None
    # FlashAttention-2's D=128 tile only with lazy rescaling and fast exp2 (a spill of a few bytes)
    fa2 = DEFAULT | {"warps": 4, "precision": "fast_exp2"}
    assert "spill" in SPEC.check(fa2, problem, device)
    assert SPEC.check(fa2 | {"rescale": "lazy"}, problem, device) is None


def test_render_launch_geometry_covers_ragged_sequences() -> None:
    problem = SPEC.validate_problem({"B": 2, "H": 3, "S": 1000})
    source = SPEC.render(DEFAULT, problem)
    assert source.grid == (8, 6, 1) and source.block == (256, 1, 1)
    assert source.shared_bytes == shared_bytes(DEFAULT, problem)
    assert [kind for kind, _ in source.scalars] == ["int32", "int32", "float32"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sm_90a", "sm_80"])
def test_every_admitted_config_compiles_within_its_spill_allowance(arch: str) -> None:
    jobs = admitted(arch)
    assert 50 <= len(jobs) <= 400, "keep the space a size CI can compile"
    limit = BACKEND.device(arch).limits["max_shared_bytes"]

    def build(job: tuple[dict, dict]):
        return job, BACKEND.compile(SPEC.render(*job), arch)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # nvcc runs as subprocesses
        results = list(pool.map(build, jobs))
    failures = [f"{job}: {art.error or ''} {art.resources}" for job, art in results
                if art.error or art.resources["spill_store_bytes"] > MAX_SPILL_BYTES
                or art.resources["stack_bytes"] > MAX_SPILL_BYTES
                or shared_bytes(*job) + art.resources["static_shared_bytes"] > limit]
    assert not failures, "\n".join(failures[:10])
