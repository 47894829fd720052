"""The CUDA template compiles with NVRTC (the default) and nvcc, without a GPU, as production compiles it.

The slow test compiles every config check() admits, for each head dim and dtype, for sm_90a and
sm_80, with the default compiler (NVRTC), and holds the resource report to check()'s promises:
spills of at most MAX_SPILL_BYTES (none but in the lazy-rescale 192-accumulator tiles), shared
memory within the arch's limit; nvcc, the fallback, builds a spread sample of the same configs to
the same promises. A template edit that breaks either fails here, in CI, before any GPU sees it.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import require
from tuner.kernel_templates import Target, find_spec
from tuner.kernel_templates.attention_cuda import MAX_SPILL_BYTES, shared_bytes
from tuner.kernel_templates.spec import Source
from tuner.workers import get_backend, nvrtc
from tuner.workers.cuda_compile import COMPILER_ENV, ToolchainMissing, compiler, nvcc_path

SPEC = find_spec("attention", "sm_90a", "mma_sync")
BACKEND = get_backend("cuda")
DEFAULT = {"block_m": 128, "block_n": 64, "warps": 8, "stages": 2, "precision": "exact", "rescale": "always",
           "occupancy": 8}
COMPILERS = ("nvrtc", "nvcc")


def _has_nvcc() -> bool:
    try:
        return bool(nvcc_path())
    except ToolchainMissing:
        return False


def _require_compiler(name: str) -> None:
    if name == "nvcc":
        require(_has_nvcc(), "nvcc is not installed (set CUDA_HOME or install the CUDA toolkit)")
    else:
        require(nvrtc.available(), "NVRTC is not installed (pip install 'tuner[nvrtc]')")


@pytest.fixture(params=COMPILERS)
def cuda_compiler(request, monkeypatch) -> str:
    """Each test using it runs once per compiler, chosen as a user chooses it (the variable)."""
    _require_compiler(request.param)
    monkeypatch.setenv(COMPILER_ENV, request.param)
    return request.param


def admitted(arch: str) -> list[tuple[dict, dict]]:
    """Every (config, problem) check() admits on ``arch``, over head dims and dtypes."""
    device = BACKEND.device(Target.documented(arch))
    names = [p.name for p in SPEC.params]
    found = []
    for values in itertools.product(*(p.choices for p in SPEC.params)):
        config = dict(zip(names, values, strict=True))
        for dim, dtype in itertools.product((64, 128), ("fp16", "bf16")):
            problem = SPEC.validate_problem({"D": dim, "dtype": dtype})
            if SPEC.check(config, problem, device) is None:
                found.append((config, problem))
    return found


def test_compile_reports_resources_and_caches(cuda_compiler: str) -> None:
    source = SPEC.render(DEFAULT, SPEC.default_problem())
    first = BACKEND.compile(source, Target.documented("sm_90a"))
    assert first.error is None, first.log
    assert os.path.getsize(first.path) > 0
    assert first.resources["registers"] > 32 and first.resources["spill_store_bytes"] == 0
    assert first.compile_time_s > 0
    again = BACKEND.compile(source, Target.documented("sm_90a"))
    assert again.cached and again.path == first.path and again.resources == first.resources
    # a hit reports what the compile cost, so every trial of the variant stores its compile seconds
    assert again.compile_time_s == pytest.approx(first.compile_time_s)
    assert BACKEND.compiler_version().startswith(f"{cuda_compiler} ")


def test_the_cache_keeps_each_compilers_cubin_apart(monkeypatch) -> None:
    _require_compiler("nvrtc")
    _require_compiler("nvcc")
    source = SPEC.render(DEFAULT, SPEC.default_problem())
    paths = {}
    for name in COMPILERS:
        monkeypatch.setenv(COMPILER_ENV, name)
        artifact = BACKEND.compile(source, Target.documented("sm_80"))
        assert artifact.error is None, artifact.log
        paths[name] = artifact.path
    assert paths["nvrtc"] != paths["nvcc"]


def test_broken_source_is_a_compile_error_not_an_exception(cuda_compiler: str) -> None:
    source = SPEC.render(DEFAULT, SPEC.default_problem())
    broken = BACKEND.compile(source.__class__(language="cuda", code=source.code + "\nthis is not C++;\n",
                                              entry=source.entry), Target.documented("sm_80"))
    assert broken.error is not None and broken.path is None
    assert "error" in broken.log


def test_nvrtc_finds_the_device_headers_a_template_includes(monkeypatch) -> None:
    _require_compiler("nvrtc")
    monkeypatch.setenv(COMPILER_ENV, "nvrtc")
    code = ("#include <cuda_fp16.h>\n#include <cuda_bf16.h>\n"
            'extern "C" __global__ void halve(__half* x, __nv_bfloat16* y) {\n'
            "  x[threadIdx.x] = __float2half(0.5f * __half2float(x[threadIdx.x]));\n"
            "  y[threadIdx.x] = __float2bfloat16(0.5f * __bfloat162float(y[threadIdx.x]));\n}\n")
    artifact = BACKEND.compile(Source("cuda", code, "halve", options=("-O3",)), Target.documented("sm_90a"))
    assert artifact.error is None, artifact.log
    assert artifact.resources["registers"] > 0


def test_nvrtc_is_the_default_and_nvcc_the_fallback_where_it_is_absent(monkeypatch) -> None:
    _require_compiler("nvrtc")
    _require_compiler("nvcc")
    monkeypatch.delenv(COMPILER_ENV, raising=False)
    assert compiler().name == "nvrtc"
    assert BACKEND.environment()["compiler"] == compiler().label  # trials say which compiler built them
    # A fresh interpreter in which cuda-bindings cannot be imported, as on a machine without it.
    probe = ("import sys; sys.modules['cuda.bindings'] = None\n"
             "from tuner.workers.cuda_compile import compiler; print(compiler().name)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "nvcc"


def test_an_unknown_compiler_name_is_a_compile_error_that_says_what_to_use(monkeypatch) -> None:
    monkeypatch.setenv(COMPILER_ENV, "clang")
    artifact = BACKEND.compile(SPEC.render(DEFAULT, SPEC.default_problem()), Target.documented("sm_90a"))
    assert artifact.path is None and COMPILER_ENV in artifact.error and "nvrtc, nvcc or auto" in artifact.error


def test_nvcc_options_reach_nvrtc_in_its_own_spelling() -> None:
    options = nvrtc.options_for("sm_90a", ("-O3", "-Xptxas=-O2", "-maxrregcount=128", "-DX=1", "--use_fast_math"))
    assert options[:2] == ["-arch=sm_90a", "--ptxas-options=-v"]
    assert "-O3" not in options  # nvcc's -O3 sets the host compiler's level; NVRTC has no host code
    assert options[-4:] == ["--ptxas-options=-O2", "--maxrregcount=128", "-DX=1", "--use_fast_math"]


def test_check_rejects_what_cannot_run() -> None:
    problem = SPEC.validate_problem({"D": 128})
    device = BACKEND.device(Target.documented("sm_86"))
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
    assert SPEC.check(two_blocks, d64, BACKEND.device(Target.documented("sm_90a"))) is None
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


def _failures(arch: str, jobs: list[tuple[dict, dict]]) -> list[str]:
    """Each job compiled for ``arch``; what failed to build or broke check()'s promises."""
    target = Target.documented(arch)
    limit = BACKEND.device(target).limits["max_shared_bytes"]

    def build(job: tuple[dict, dict]):
        return job, BACKEND.compile(SPEC.render(*job), target)

    # nvcc runs as subprocesses and NVRTC releases the GIL while it compiles: threads keep both busy
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(build, jobs))
    return [f"{job}: {art.error or ''} {art.resources}" for job, art in results
            if art.error or art.resources["spill_store_bytes"] > MAX_SPILL_BYTES
            or art.resources["stack_bytes"] > MAX_SPILL_BYTES
            or shared_bytes(*job) + art.resources["static_shared_bytes"] > limit]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sm_90a", "sm_80"])
def test_every_admitted_config_compiles_with_nvrtc_within_its_spill_allowance(arch: str, monkeypatch) -> None:
    _require_compiler("nvrtc")
    monkeypatch.setenv(COMPILER_ENV, "nvrtc")
    jobs = admitted(arch)
    assert 50 <= len(jobs) <= 400, "keep the space a size CI can compile"
    failures = _failures(arch, jobs)
    assert not failures, "\n".join(failures[:10])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sm_90a", "sm_80"])
def test_nvcc_the_fallback_keeps_the_same_promises_on_a_spread_sample(arch: str, monkeypatch) -> None:
    _require_compiler("nvcc")
    monkeypatch.setenv(COMPILER_ENV, "nvcc")
    jobs = admitted(arch)[::12]  # every 12th: each knob's values and both dtypes and head dims
    failures = _failures(arch, jobs)
    assert not failures, "\n".join(failures[:10])
