"""The Hopper (wgmma) attention family on the CPU: its constraints, its rendered launch, and (slow)
every admitted fp16 variant compiled for sm_90a, held to what check() promises: no spills, no local
memory, shared memory within the arch's limit, the warpgroup MMAs (HGMMA) of Q·Kᵀ and P·V, TMA loads
and register reallocation in the SASS. bf16 changes only the MMA type and the conversions: its
largest tile of each kind is compiled too.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import require
from tuner.kernel_templates import Target, find_spec
from tuner.kernel_templates.attention_hopper import section_heads, shared_bytes
from tuner.workers import get_backend
from tuner.workers.cuda_compile import ToolchainMissing, nvcc_path
from tuner.workers.sass import DisassemblerMissing, count, cuobjdump_path, dump_sass

SPEC = find_spec("attention", "sm_90a", "wgmma")
BACKEND = get_backend("cuda")
TARGET = Target.documented("sm_90a")
DEVICE = BACKEND.device(TARGET)
NAMES = [p.name for p in SPEC.params]
DEFAULT = {"block_m": 128, "block_n": 128, "stages": 2, "overlap": "intra", "pingpong": True}


def _available(probe) -> bool:
    try:
        return bool(probe())
    except (ToolchainMissing, DisassemblerMissing):
        return False


def admitted(dtype: str, head_dim: int) -> list[dict[str, Any]]:
    problem = SPEC.validate_problem({"D": head_dim, "dtype": dtype})
    every = (dict(zip(NAMES, values, strict=True)) for values in itertools.product(*(p.choices for p in SPEC.params)))
    return [c for c in every if SPEC.check(c, problem, DEVICE) is None]


def jobs() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every admitted fp16 variant, and bf16's largest block_n of each block_m, overlap and ping-pong."""
    found = []
    for head_dim in (64, 128, 256):
        found += [(c, SPEC.validate_problem({"D": head_dim})) for c in admitted("fp16", head_dim)]
        largest: dict[tuple, dict[str, Any]] = {}
        for c in admitted("bf16", head_dim):
            key = (c["block_m"], c["overlap"], c["pingpong"])
            if key not in largest or c["block_n"] > largest[key]["block_n"]:
                largest[key] = c
        found += [(c, SPEC.validate_problem({"D": head_dim, "dtype": "bf16"})) for c in largest.values()]
    return found


def test_render_passes_sizes_at_run_time_and_asks_for_tensor_maps() -> None:
    problem = SPEC.validate_problem({"B": 2, "H": 32, "S": 1000, "D": 128, "causal": True, "dtype": "bf16"})
    source = SPEC.render(DEFAULT, problem)
    assert '#include "hopper.cuh"' not in source.code and "namespace hopper" in source.code
    assert source.grid == (8 * 2 * 32, 1, 1) and source.block == (384, 1, 1) and source.persistent
    assert [(m.buffer, m.box) for m in source.tensor_maps] == [("q", (64, 128, 1, 1)), ("k", (64, 128, 1, 1)),
                                                              ("v", (64, 128, 1, 1))]
    assert source.shared_bytes == shared_bytes(DEFAULT, 128) == (128 + 4 * 128) * 128 * 2 + 1024
    b, h, s, group, causal, section, scale = (value for _, value in source.scalars)
    assert (b, h, s, group, causal) == (2, 32, 1000, 1, 1) and math.isclose(scale, math.log2(math.e) / math.sqrt(128))
    assert section == section_heads(problem) == 49  # K/V of 1000 keys x 128 x 2 bytes a head: 49 heads in 24 MiB
    # S, B, H and the causal flag are run-time: one binary serves every problem of a head dim and dtype
    other = SPEC.render(DEFAULT, SPEC.validate_problem({"S": 77, "D": 128, "dtype": "bf16"}))
    assert other.code_digest() == source.code_digest()
    assert SPEC.render(DEFAULT, problem | {"H_kv": 8}).scalars[3] == ("int32", 4)  # GQA: 4 query heads a K/V head


def test_check_rejects_what_cannot_run() -> None:
    d64, d256 = SPEC.validate_problem({"D": 64}), SPEC.validate_problem({"D": 256})
    assert SPEC.check(DEFAULT, d64, DEVICE) is None
    assert "ping-pong" in SPEC.check(DEFAULT | {"block_m": 64}, d64, DEVICE)
    assert "spill" in SPEC.check(DEFAULT | {"block_m": 192}, d64, DEVICE)  # 3 consumers get 160 registers
    assert SPEC.check(DEFAULT | {"block_m": 192, "overlap": "serial", "block_n": 144}, d64, DEVICE) is None
    assert "shared memory" in SPEC.check(DEFAULT | {"block_n": 64, "stages": 3}, d256, DEVICE)
    assert SPEC.check(DEFAULT | {"block_n": 64}, d256, DEVICE) is None
    assert "multiple of H_kv" in SPEC.check(DEFAULT, d64 | {"H": 6, "H_kv": 4}, DEVICE)
    assert 200 <= len(jobs()) <= 300, "keep the compiled set a size CI can build"


@pytest.mark.slow
def test_every_admitted_config_compiles_without_spills_to_hgmma() -> None:
    require(_available(nvcc_path), "nvcc is not installed (set CUDA_HOME or install the CUDA toolkit)")
    require(_available(cuobjdump_path),
            "cuobjdump is not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    limit = DEVICE.limits["max_shared_bytes"]

    def build(job: tuple[dict[str, Any], dict[str, Any]]) -> str | None:
        config, problem = job
        artifact = BACKEND.compile(SPEC.render(config, problem), TARGET)
        if artifact.error:
            return f"{job}: {artifact.error} {artifact.log}"
        resources, sass = artifact.resources, dump_sass(artifact.path)
        hgmma, scores, values = count(sass, "HGMMA"), problem["D"] // 16, config["block_n"] // 16
        # Q·Kᵀ and P·V of the key loop (twice: unmasked and masked) and of the tile's first and last key tile
        expected = 2 * (scores + values) + (scores + values if config["overlap"] == "intra" else 0)
        problems = [
            resources["spill_store_bytes"] and "spills", resources["stack_bytes"] and "a stack frame",
            count(sass, "LDL") + count(sass, "STL") and "local memory",
            shared_bytes(config, problem["D"]) + resources["static_shared_bytes"] > limit and "too much shared memory",
            hgmma != expected and f"{hgmma} HGMMA, not {expected}",
            not count(sass, "UTMALDG") and "no TMA load",
            config["block_m"] > 64 and count(sass, "USETMAXREG") != 2 and "no register reallocation"]
        found = [p for p in problems if p]
        return f"{job}: {', '.join(found)} {resources}" if found else None

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failures = [f for f in pool.map(build, jobs()) if f]
    assert not failures, "\n".join(failures[:10])
