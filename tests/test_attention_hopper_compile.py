"""The Hopper (wgmma) attention family on the CPU: its constraints, its rendered launch, and (slow)
admitted variants compiled for sm_90a, held to what check() promises: no spills, no local memory,
shared memory within the arch's limit, the warpgroup MMAs (HGMMA) of Q·Kᵀ and P·V, TMA loads and
register reallocation in the SASS, TMA stores (UTMASTG) for the TMA epilogue and multicast loads
for 2-block clusters.

Compiled: every admitted fp16 variant with the direct epilogue and no cluster; bf16 (which changes
only the MMA type and the conversions) at its largest tile of each kind; and for the TMA epilogue
and the 2-block cluster, each alone and both, the largest tile (block_n, then stages) of every
block_m, overlap and ping-pong at fp16: those knobs change the code outside the key loop and the
producer, so the tile with the most live values and shared memory is where they would spill or not
fit (the whole cross product would be four times as many compiles). FP8 (precision=e4m3, on an
fp8=true problem): every admitted variant with the direct epilogue, the TMA epilogue's largest tile
of each kind and, for each polynomial-exp2 share, the two tiles with the most live values, held to
the same promises with e4m3 warpgroup MMAs (QGMMA) instead.
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
from tuner.kernel_templates.attention_hopper import live_values, section_heads, shared_bytes
from tuner.workers import get_backend
from tuner.workers.cuda_compile import ToolchainMissing, nvcc_path
from tuner.workers.sass import DisassemblerMissing, count, cuobjdump_path, dump_sass

SPEC = find_spec("attention", "sm_90a", "wgmma")
BACKEND = get_backend("cuda")
TARGET = Target.documented("sm_90a")
DEVICE = BACKEND.device(TARGET)
NAMES = [p.name for p in SPEC.params]
DEFAULT = {"block_m": 128, "block_n": 128, "stages": 2, "overlap": "intra", "pingpong": True, "epilogue": "direct",
           "cluster": 1}
PLAIN = {"epilogue": "direct", "cluster": 1, "poly_exp2": 0}
NEW = tuple(knobs | {"poly_exp2": 0} for knobs in (
    {"epilogue": "tma", "cluster": 1}, {"epilogue": "direct", "cluster": 2}, {"epilogue": "tma", "cluster": 2}))
POLY = tuple(PLAIN | {"poly_exp2": share} for share in (25, 50))


def _available(probe) -> bool:
    try:
        return bool(probe())
    except (ToolchainMissing, DisassemblerMissing):
        return False


def admitted(dtype: str, head_dim: int, knobs: dict[str, Any]) -> list[dict[str, Any]]:
    """The admitted configs with the epilogue and cluster (and for FP8 the precision) of ``knobs``."""
    problem = SPEC.validate_problem({"D": head_dim, "dtype": dtype, "fp8": knobs.get("precision") == "e4m3"})
    every = (dict(zip(NAMES, values, strict=True)) for values in itertools.product(*(p.choices for p in SPEC.params)))
    return [c for c in every if c | knobs == c and SPEC.check(c, problem, DEVICE) is None]


def largest(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The largest block_n (then stages) of each block_m, overlap and ping-pong."""
    found: dict[tuple, dict[str, Any]] = {}
    for c in configs:
        key = (c["block_m"], c["overlap"], c["pingpong"])
        if key not in found or (c["block_n"], c["stages"]) > (found[key]["block_n"], found[key]["stages"]):
            found[key] = c
    return list(found.values())


def most_live(configs: list[dict[str, Any]], head_dim: int, keep: int = 2) -> list[dict[str, Any]]:
    """The ``keep`` configs with the most live values per consumer thread: where a change to the
    softmax's instruction mix alone (the polynomial exp2) would spill first."""
    return sorted(configs, key=lambda c: (live_values(c, head_dim), c["block_m"], c["stages"]))[-keep:]


HEAD_DIMS = (64, 128, 256)
PARTS = ("fp16", "bf16", "new knobs", "fp8")
FP8 = {"precision": "e4m3"}


def jobs_of(head_dim: int, part: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One part of the compiled set at one head dim: every plain fp16 variant, bf16's largest, or
    the TMA epilogue and cluster variants' largest, or FP8's (a test each, so none runs for long)."""
    fp16, bf16 = SPEC.validate_problem({"D": head_dim}), SPEC.validate_problem({"D": head_dim, "dtype": "bf16"})
    if part == "fp16":
        return [(c, fp16) for c in admitted("fp16", head_dim, PLAIN)]
    if part == "fp8":
        fp8 = fp16 | {"fp8": True}
        return [(c, fp8) for c in admitted("fp16", head_dim, PLAIN | FP8)
                + largest(admitted("fp16", head_dim, NEW[0] | FP8))
                + [c for knobs in POLY for c in most_live(admitted("fp16", head_dim, knobs | FP8), head_dim)]]
    if part == "bf16":
        return [(c, bf16) for c in largest(admitted("bf16", head_dim, PLAIN))]
    return [(c, fp16) for knobs in NEW for c in largest(admitted("fp16", head_dim, knobs))]


def jobs() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The compiled set of the module docstring."""
    return [job for head_dim in HEAD_DIMS for part in PARTS for job in jobs_of(head_dim, part)]


def test_render_passes_sizes_at_run_time_and_asks_for_tensor_maps() -> None:
    problem = SPEC.validate_problem({"B": 2, "H": 32, "S": 1000, "D": 128, "causal": True, "dtype": "bf16"})
    source = SPEC.render(DEFAULT, problem)
    assert '#include "hopper.cuh"' not in source.code and "namespace hopper" in source.code
    assert source.grid == (8 * 2 * 32, 1, 1) and source.block == (384, 1, 1) and source.persistent
    assert [(m.buffer, m.box) for m in source.tensor_maps] == [("q", (64, 128, 1, 1)), ("k", (64, 128, 1, 1)),
                                                              ("v", (64, 128, 1, 1))]
    assert source.cluster == (1, 1, 1)
    assert source.shared_bytes == shared_bytes(DEFAULT, 128) == (128 + 4 * 128) * 128 * 2 + 1024
    b, h, s, group, causal, section, scale = (value for _, value in source.scalars)
    assert (b, h, s, group, causal) == (2, 32, 1000, 1, 1) and math.isclose(scale, math.log2(math.e) / math.sqrt(128))
    assert section == section_heads(problem) == 49  # K/V of 1000 keys x 128 x 2 bytes a head: 49 heads in 24 MiB
    # S, B, H and the causal flag are run-time: one binary serves every problem of a head dim and dtype
    other = SPEC.render(DEFAULT, SPEC.validate_problem({"S": 77, "D": 128, "dtype": "bf16"}))
    assert other.code_digest() == source.code_digest()
    assert SPEC.render(DEFAULT, problem | {"H_kv": 8}).scalars[3] == ("int32", 4)  # GQA: 4 query heads a K/V head


def test_render_of_the_tma_epilogue_and_the_cluster() -> None:
    problem = SPEC.validate_problem({"B": 2, "H": 32, "S": 1000, "D": 128})  # 8 m-blocks of 128
    tma = SPEC.render(DEFAULT | {"epilogue": "tma"}, problem)
    assert [(m.buffer, m.box) for m in tma.tensor_maps][3:] == [("out", (64, 64, 1, 1))]  # a consumer's 64 rows
    assert tma.shared_bytes == shared_bytes(DEFAULT, 128) + 128 * 128 * 2  # O staged beside Q and the ring
    pair = SPEC.render(DEFAULT | {"cluster": 2}, problem)
    assert pair.cluster == (2, 1, 1) and pair.grid == tma.grid == (8 * 2 * 32, 1, 1)
    assert [m.box for m in pair.tensor_maps] == [(64, 128, 1, 1), (64, 64, 1, 1), (64, 64, 1, 1)]  # K/V halves
    odd = SPEC.validate_problem({"B": 2, "H": 32, "S": 900, "D": 128})  # 5 m-blocks of 192: 3 pairs, one half empty
    assert SPEC.render(DEFAULT | {"cluster": 2, "block_m": 192}, odd).grid == (6 * 2 * 32, 1, 1)
    assert "#define EPILOGUE_TMA 1" in tma.code and "#define CLUSTER 2" in pair.code


def test_render_of_fp8() -> None:
    """e4m3 Q and K in rows of D bytes (64-byte swizzle at D=64), V transposed in rows of block_n keys."""
    problem = SPEC.validate_problem({"B": 2, "H": 32, "S": 1000, "D": 64, "fp8": True})
    config = DEFAULT | FP8
    source = SPEC.render(config, problem)
    assert [(m.buffer, m.box, m.swizzle) for m in source.tensor_maps] == [
        ("q8", (64, 128, 1, 1), 64), ("k8", (64, 128, 1, 1), 64), ("vt8", (128, 64, 1, 1), 128)]
    assert "#define FP8 1" in source.code and "#define FP8 0" in SPEC.render(DEFAULT, problem).code
    assert source.shared_bytes == shared_bytes(config, 64) == (128 + 4 * 128) * 64 + 1024  # 1-byte elements
    d128 = SPEC.render(config | {"block_n": 64, "epilogue": "tma"}, problem | {"D": 128})
    assert [(m.box, m.swizzle) for m in d128.tensor_maps] == [((128, 128, 1, 1), 128), ((128, 64, 1, 1), 128),
                                                             ((64, 128, 1, 1), 64), ((64, 64, 1, 1), 128)]
    assert d128.shared_bytes == (128 + 4 * 64) * 128 + 128 * 128 * 2 + 1024  # the 16-bit O tile beside


def test_check_rejects_what_cannot_run() -> None:
    d64, d256 = SPEC.validate_problem({"D": 64}), SPEC.validate_problem({"D": 256})
    assert SPEC.check(DEFAULT, d64, DEVICE) is None
    assert "ping-pong" in SPEC.check(DEFAULT | {"block_m": 64}, d64, DEVICE)
    assert "spill" in SPEC.check(DEFAULT | {"block_m": 192}, d64, DEVICE)  # 3 consumers get 160 registers
    assert SPEC.check(DEFAULT | {"block_m": 192, "overlap": "serial", "block_n": 144}, d64, DEVICE) is None
    assert "shared memory" in SPEC.check(DEFAULT | {"block_n": 64, "stages": 3}, d256, DEVICE)
    assert SPEC.check(DEFAULT | {"block_n": 64}, d256, DEVICE) is None
    assert "multiple of H_kv" in SPEC.check(DEFAULT, d64 | {"H": 6, "H_kv": 4}, DEVICE)
    # the TMA epilogue's output buffer: at D=256 only 64-row tiles of up to 80 keys and 2 stages fit
    assert "shared memory" in SPEC.check(DEFAULT | {"block_n": 64, "epilogue": "tma"}, d256, DEVICE)
    small = DEFAULT | {"block_m": 64, "block_n": 80, "overlap": "serial", "pingpong": False, "epilogue": "tma"}
    assert SPEC.check(small, d256, DEVICE) is None
    assert "shared memory" in SPEC.check(small | {"block_n": 96}, d256, DEVICE)
    # a cluster's producer takes registers from 3 consumers: 104 live values spill there
    serial = DEFAULT | {"block_m": 192, "block_n": 144, "overlap": "serial"}
    assert SPEC.check(serial, d64, DEVICE) is None and "spill" in SPEC.check(serial | {"cluster": 2}, d64, DEVICE)
    # FP8: where the problem asks for it, with one block and a transposed V row of 64 or 128 keys
    assert "fp8=true" in SPEC.check(DEFAULT | FP8, d64, DEVICE)
    fp8 = d64 | {"fp8": True}
    assert SPEC.check(DEFAULT | FP8, fp8, DEVICE) is None and SPEC.check(DEFAULT, fp8, DEVICE) is None
    assert "cluster 1 and block_n 64 or 128" in SPEC.check(DEFAULT | FP8 | {"block_n": 96}, fp8, DEVICE)
    assert "cluster 1" in SPEC.check(DEFAULT | FP8 | {"cluster": 2}, fp8, DEVICE)
    # the polynomial exp2 is an FP8 knob: 16-bit products leave MUFU time to spare
    assert SPEC.check(DEFAULT | FP8 | {"poly_exp2": 25}, fp8, DEVICE) is None
    assert "precision=e4m3 only" in SPEC.check(DEFAULT | {"poly_exp2": 25}, fp8, DEVICE)
    assert 380 <= len(jobs()) <= 440, "keep the compiled set a size CI can build"


@pytest.mark.slow
@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_every_admitted_config_compiles_without_spills_to_hgmma(head_dim: int, part: str) -> None:
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
        e4m3 = config.get("precision") == "e4m3"  # k32 steps of 32 bytes, as k16 of 16-bit values
        mma = "QGMMA" if e4m3 else "HGMMA"
        hgmma, scores, values = count(sass, mma), problem["D"] // (32 if e4m3 else 16), config["block_n"] // (
            32 if e4m3 else 16)
        # Q·Kᵀ and P·V of the key loop (twice: unmasked and masked) and of the tile's first and last key tile
        expected = 2 * (scores + values) + (scores + values if config["overlap"] == "intra" else 0)
        problems = [
            resources["spill_store_bytes"] and "spills", resources["stack_bytes"] and "a stack frame",
            count(sass, "LDL") + count(sass, "STL") and "local memory",
            shared_bytes(config, problem["D"]) + resources["static_shared_bytes"] > limit and "too much shared memory",
            hgmma != expected and f"{hgmma} {mma}, not {expected}",
            not count(sass, "UTMALDG") and "no TMA load",
            (config["epilogue"] == "tma") != bool(count(sass, "UTMASTG")) and "TMA stores not as configured",
            (config["cluster"] == 2) != bool(count(sass, "UTMALDG.4D.MULTICAST")) and "multicast not as configured",
            config["block_m"] > 64 and count(sass, "USETMAXREG") != 2 and "no register reallocation"]
        found = [p for p in problems if p]
        return f"{job}: {', '.join(found)} {resources}" if found else None

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failures = [f for f in pool.map(build, jobs_of(head_dim, part)) if f]
    assert not failures, "\n".join(failures[:10])
