"""The Hopper GEMM template on the CPU: its constraints, its rendered launch, and (slow) every
admitted variant compiled with nvcc for sm_90a, held to what check() promises: no spills, no local
memory, shared memory within the arch's limit, and the warpgroup MMAs (HGMMA for fp16/bf16, QGMMA
for e4m3), TMA loads and register reallocation present in the SASS.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import require
from tuner.kernel_templates import Source, Target, canonical_json, find_spec
from tuner.kernel_templates.gemm_cuda import (
    MAX_ACCUMULATORS,
    RASTER_GROUP,
    element_bytes,
    shared_bytes,
    static_shared_bytes,
    warpgroup_rows,
)
from tuner.kernel_templates.headers import inline_headers
from tuner.workers import get_backend, nvrtc
from tuner.workers.cuda_compile import COMPILER_ENV, ToolchainMissing, nvcc_path
from tuner.workers.sass import DisassemblerMissing, count, cuobjdump_path, dump_sass

SPEC = find_spec("gemm", "sm_90a")
BACKEND = get_backend("cuda")
TARGET = Target.documented("sm_90a")
DEVICE = BACKEND.device(TARGET)
DEFAULT = {"block_m": 128, "block_n": 256, "block_k": 64, "stages": 4, "consumers": 2, "cluster": 2,
           "persistent": True, "raster": "m", "epilogue": "direct", "split_k": 1, "schedule": "cooperative"}
PINGPONG = DEFAULT | {"block_m": 64, "schedule": "pingpong", "epilogue": "tma"}
FP8 = DEFAULT | {"block_k": 128, "precision": "e4m3"}
# (dtype, layout, out_dtype) of each precision's problems, and the MMA each assembles to
PRECISIONS = {"16-bit": ([(d, layout, "same") for d in ("fp16", "bf16") for layout in ("nn", "nt")], "HGMMA"),
              "e4m3": ([("e4m3", "nt", out) for out in ("fp16", "bf16", "fp32")], "QGMMA")}


def _available(probe) -> bool:
    try:
        return bool(probe())
    except (ToolchainMissing, DisassemblerMissing):
        return False


def admitted(precision: str) -> list[tuple[dict, dict]]:
    """One (config, problem) per distinct binary check() admits, over the precision's types and
    layouts, on a problem of many tiles and one of few (where split-K is admitted too)."""
    names = [p.name for p in SPEC.params]
    found = {}
    for values in itertools.product(*(p.choices for p in SPEC.params)):
        config = dict(zip(names, values, strict=True))
        for (dtype, layout, out), sizes in itertools.product(PRECISIONS[precision][0],
                                                             ({}, {"M": 512, "N": 512, "K": 8192})):
            problem = SPEC.validate_problem({"dtype": dtype, "layout": layout, "out_dtype": out, **sizes})
            if SPEC.check(config, problem, DEVICE) is None:
                found.setdefault(SPEC.render(config, problem).code_digest(), (config, problem))
    return list(found.values())


def test_render_inlines_the_header_and_passes_sizes_at_run_time() -> None:
    problem = SPEC.validate_problem({"M": 1000, "N": 5000, "K": 3000, "layout": "nt"})
    source = SPEC.render(DEFAULT, problem)
    assert '#include "hopper.cuh"' not in source.code and "namespace hopper" in source.code
    assert source.code.count("struct alignas(64) TmaDescriptor") == 1
    # 8 tile rows of 128 (rounded up to whole clusters of 2) x 20 tile columns of 256
    assert source.grid == (8 * 20, 1, 1) and source.block == (384, 1, 1) and source.cluster == (2, 1, 1)
    assert source.persistent and source.shared_bytes == shared_bytes(DEFAULT)
    assert source.scalars == (("int32", 1000), ("int32", 5000), ("int32", 3000), ("int32", 1), ("int32", RASTER_GROUP))
    a, b = source.tensor_maps
    assert (a.buffer, a.box, b.buffer, b.box) == ("a", (64, 128), "b", (64, 128))  # B's rows split over the cluster
    nn = SPEC.render(DEFAULT, SPEC.validate_problem({"layout": "nn"}))
    assert nn.tensor_maps[1].box == (64, 64)  # 64 columns x BLOCK_K rows of B [K, N]
    tma = SPEC.render(DEFAULT | {"stages": 3, "epilogue": "tma"}, problem)
    assert tma.tensor_maps[2].buffer == "out" and tma.tensor_maps[2].box == (64, 64)  # one consumer's rows
    assert tma.shared_bytes == source.shared_bytes - 48 * 1024 + 128 * 256 * 2
    half = SPEC.render(DEFAULT | {"epilogue": "tma_half"}, problem)  # 4 stages and half the output tile
    assert half.shared_bytes == source.shared_bytes + 128 * 128 * 2 and half.tensor_maps[2].box == (64, 64)
    assert "#define EPILOGUE_COLS 128" in half.code and "#define PINGPONG 0" in half.code
    pingpong = SPEC.render(PINGPONG, problem)  # each consumer stores a whole 64-row tile of its own
    assert pingpong.tensor_maps[2].box == (64, 64) and pingpong.shared_bytes == 4 * 40 * 1024 + 2 * 64 * 256 * 2 + 1024
    assert "#define PINGPONG 1" in pingpong.code and pingpong.block == (384, 1, 1)
    # the sizes, raster order and persistence are run-time: one binary serves them all
    other = SPEC.render(DEFAULT | {"persistent": False, "raster": "n"},
                        SPEC.validate_problem({"M": 77, "layout": "nt"}))
    assert other.code_digest() == source.code_digest() and other.digest() != source.digest()


def test_digest_covers_tensor_maps_and_clusters_but_not_for_sources_without_them() -> None:
    source = SPEC.render(DEFAULT, SPEC.default_problem())
    fields = {"tensor_maps": (), "cluster": (1, 1, 1), "persistent": False}
    plain = source.__class__(**{**source.__dict__, **fields})
    old_form = canonical_json({"language": plain.language, "code": plain.code, "entry": plain.entry,
                               "options": list(plain.options), "scalars": [list(s) for s in plain.scalars],
                               "grid": list(plain.grid), "block": list(plain.block),
                               "shared_bytes": plain.shared_bytes})
    assert plain.digest() == hashlib.sha256(old_form.encode()).hexdigest()
    digests = {plain.digest(), source.digest()}
    for change in ({"cluster": (1, 1, 1)}, {"persistent": False},
                   {"tensor_maps": (source.tensor_maps[0].__class__("a", (64, 64)), source.tensor_maps[1])}):
        digests.add(source.__class__(**{**source.__dict__, **change}).digest())
    assert len(digests) == 5


def test_inline_headers_refuses_an_unknown_header() -> None:
    assert inline_headers('#include "hopper.cuh"\n#include "hopper.cuh"\n').count("namespace hopper {") == 1
    with pytest.raises(FileNotFoundError, match="no_such.cuh"):
        inline_headers('#include "no_such.cuh"\n')


def test_check_rejects_what_cannot_run() -> None:
    nn, nt = (SPEC.validate_problem({"layout": layout}) for layout in ("nn", "nt"))
    assert SPEC.check(DEFAULT, nn, DEVICE) is None
    assert "rows per consumer" in SPEC.check(DEFAULT | {"block_m": 64}, nn, DEVICE)
    assert "rows per consumer" in SPEC.check(DEFAULT | {"block_m": 256, "consumers": 1}, nn, DEVICE)
    assert f"over {MAX_ACCUMULATORS}" in SPEC.check(DEFAULT | {"block_m": 256}, nn, DEVICE)
    assert "shared memory" in SPEC.check(DEFAULT | {"stages": 5}, nn, DEVICE)
    assert shared_bytes(DEFAULT) + static_shared_bytes(DEFAULT) <= DEVICE.limits["max_shared_bytes"]
    assert SPEC.check(DEFAULT, nt, DEVICE) is None
    assert "in flight" in SPEC.check(DEFAULT | {"block_n": 128, "stages": 2}, nn, DEVICE)
    # block_n 192 (the wave filler): 128-row cooperative tiles, whole-tile epilogues, no nn cluster
    wide = DEFAULT | {"block_n": 192, "cluster": 1}
    assert SPEC.check(wide, nn, DEVICE) is None and SPEC.check(wide | {"cluster": 2}, nt, DEVICE) is None
    assert "128-row cooperative" in SPEC.check(wide | {"block_m": 64, "consumers": 1}, nn, DEVICE)
    assert "64-column halves" in SPEC.check(wide | {"cluster": 2}, nn, DEVICE)
    assert "two 64-column-aligned halves" in SPEC.check(wide | {"epilogue": "tma_half"}, nn, DEVICE)
    tma = DEFAULT | {"stages": 3, "epilogue": "tma"}  # the output tile takes a stage's room and more
    assert "shared memory" in SPEC.check(tma | {"stages": 4}, nn, DEVICE)
    assert SPEC.check(tma, SPEC.validate_problem({"N": 1000}), DEVICE) is None
    assert "multiple of 8" in SPEC.check(tma, SPEC.validate_problem({"N": 1001}), DEVICE)
    assert SPEC.check(DEFAULT, SPEC.validate_problem({"N": 1001}), DEVICE) is None
    split = DEFAULT | {"block_n": 128, "cluster": 1, "persistent": False, "split_k": 2}
    few_tiles = SPEC.validate_problem({"M": 512, "N": 512, "K": 8192})
    assert SPEC.check(split, few_tiles, DEVICE) is None
    assert "fill the 132 SMs" in SPEC.check(split, nn, DEVICE)  # 32 x 32 tiles
    assert "more than one block_k" in SPEC.check(split, SPEC.validate_problem({"M": 64, "K": 64}), DEVICE)
    assert "cluster=1 and persistent=False" in SPEC.check(split | {"cluster": 2}, few_tiles, DEVICE)
    assert "spills" in SPEC.check(split | {"block_n": 256}, few_tiles, DEVICE)
    assert SPEC.check(PINGPONG, nn, DEVICE) is None
    assert SPEC.check(PINGPONG | {"block_m": 128, "block_n": 128, "stages": 5}, nt, DEVICE) is None
    for change in ({"consumers": 1}, {"persistent": False}):
        assert "consumers=2, persistent=True" in SPEC.check(PINGPONG | change, nn, DEVICE)
    assert f"over {MAX_ACCUMULATORS}" in SPEC.check(PINGPONG | {"block_m": 128}, nn, DEVICE)  # a 128x256 tile each
    assert "64 or 128" in SPEC.check(PINGPONG | {"block_m": 256, "block_n": 128}, nn, DEVICE)
    assert SPEC.check(DEFAULT | {"epilogue": "tma_half"}, nn, DEVICE) is None  # the 4th stage at 128x256
    assert "use tma" in SPEC.check(DEFAULT | {"epilogue": "tma_half", "stages": 3}, nn, DEVICE)


PRIMITIVES_PROBE = r"""
#include "hopper.cuh"
using namespace hopper;
extern "C" __global__ void __launch_bounds__(128, 1) probe(float *out, const u32 *in, int scale) {
  __shared__ alignas(1024) unsigned char tile[64 * 128];
  float d64[32], d128[64], d256[128];
  u32 a[4] = {in[0], in[1], in[2], in[3]};
  wgmma_fence();
  Wgmma<64, 0>::rs<0>(d64, a, smem_descriptor(tile, 16, 1024), scale);
  Wgmma<128, 1>::rs<1>(d128, a, smem_descriptor(tile, 8192, 1024), scale);
  Wgmma<256, 0>::ss<0>(d256, smem_descriptor(tile, 16, 1024), smem_descriptor(tile, 16, 1024), scale);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(d64), fence_registers(d128), fence_registers(d256);
  float sum = 0;
  for (int i = 0; i < 32; i++) sum += d64[i] + d128[i] + d128[32 + i];
  for (int i = 0; i < 128; i++) sum += d256[i];
  out[threadIdx.x] = sum;
}
"""


def test_register_and_shared_a_forms_of_wgmma_assemble_to_hgmma() -> None:
    require(_available(nvcc_path), "nvcc is not installed (set CUDA_HOME or install the CUDA toolkit)")
    require(_available(cuobjdump_path),
            "cuobjdump is not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    source = Source("cuda", inline_headers(PRIMITIVES_PROBE), "probe")
    artifact = BACKEND.compile(source, TARGET)
    assert artifact.error is None, artifact.log
    hgmma = [line for line in dump_sass(artifact.path).splitlines() if "HGMMA" in line]
    assert len(hgmma) == 3
    assert "64x64x16.F32 " in hgmma[0] and "gdesc" in hgmma[0] and hgmma[0].count(", R") >= 2  # A in registers
    assert "64x128x16.F32.BF16" in hgmma[1] and ".tnspB" in hgmma[1]
    assert "64x256x16.F32 " in hgmma[2]


@pytest.mark.slow
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_admitted_config_compiles_without_spills_to_warpgroup_mmas(precision: str) -> None:
    require(_available(nvcc_path), "nvcc is not installed (set CUDA_HOME or install the CUDA toolkit)")
    require(_available(cuobjdump_path),
            "cuobjdump is not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    jobs = admitted(precision)
    assert 200 <= len(jobs) <= 480, "keep the compiled set a size CI can build"
    limit = DEVICE.limits["max_shared_bytes"]
    mma = PRECISIONS[precision][1]

    def build(job: tuple[dict, dict]) -> str | None:
        config, problem = job
        artifact = BACKEND.compile(SPEC.render(config, problem), TARGET)
        if artifact.error:
            return f"{job}: {artifact.error} {artifact.log}"
        resources = artifact.resources
        sass = dump_sass(artifact.path)
        atoms = warpgroup_rows(config) // 64
        # one per 32-byte k-step and m64 row of a stage (maybe repeated by unrolling)
        mmas, steps = count(sass, mma), config["block_k"] * element_bytes(config, problem)[0] // 32
        problems = [
            resources["spill_store_bytes"] and "spills", resources["stack_bytes"] and "a stack frame",
            count(sass, "LDL") + count(sass, "STL") and "local memory",
            shared_bytes(config, *element_bytes(config, problem)) + resources["static_shared_bytes"] > limit
            and "too much shared memory",
            (not mmas or mmas % (steps * atoms)) and f"{mmas} {mma}",
            not count(sass, "UTMALDG") and "no TMA load",
            (config["epilogue"] != "direct") != bool(count(sass, "UTMASTG")) and "TMA stores do not match the epilogue",
            config["consumers"] > 1 and count(sass, "USETMAXREG") != 2 and "no register reallocation"]
        found = [p for p in problems if p]
        return f"{job}: {', '.join(found)} {resources}" if found else None

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # nvcc runs as subprocesses
        failures = [f for f in pool.map(build, jobs) if f]
    assert not failures, "\n".join(failures[:10])


def test_nvrtc_builds_a_variant_of_every_kind(monkeypatch) -> None:
    """NVRTC, the GPU machine's compiler (dev pins its 13.0, which refuses code newer ones and
    nvcc take), builds one admitted binary of each precision, schedule, epilogue, split-K and
    stream-K, where the slow test above builds them all."""
    require(nvrtc.available(), "NVRTC is not installed (pip install 'tuner[nvrtc]')")
    monkeypatch.setenv(COMPILER_ENV, "nvrtc")
    kinds: dict[tuple, tuple[dict, dict]] = {}
    for config, problem in admitted("16-bit") + admitted("e4m3"):
        kind = tuple(config.get(k) for k in ("precision", "schedule", "epilogue", "split_k", "stream_k"))
        kinds.setdefault(kind, (config, problem))
    assert any(kind[-1] for kind in kinds), "stream-K is among them"

    def build(job: tuple[dict, dict]) -> str | None:
        artifact = BACKEND.compile(SPEC.render(*job), TARGET)
        return f"{job}: {artifact.error} {artifact.log}" if artifact.error else None

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # NVRTC releases the GIL
        failures = [f for f in pool.map(build, kinds.values()) if f]
    assert not failures, "\n".join(failures[:3])


def test_fp8_renders_one_byte_boxes_and_its_scales() -> None:
    problem = SPEC.validate_problem({"dtype": "e4m3", "layout": "nt", "out_dtype": "fp32", "M": 1000})
    assert SPEC.check(FP8, problem, DEVICE) is None
    source = SPEC.render(FP8, problem)
    a, b = source.tensor_maps
    # 128 one-byte K values fill a 128-byte swizzled row; B's rows split over the cluster of 2
    assert (a.box, b.box, a.swizzle, b.swizzle) == ((128, 128), (128, 128), 128, 128)
    assert "#define IN_FP8 1" in source.code and "#define OUT_BYTES 4" in source.code
    assert source.shared_bytes == shared_bytes(DEFAULT)  # a stage holds the same bytes as fp16's
    tma = SPEC.render(FP8 | {"stages": 3, "epilogue": "tma"}, problem)
    assert tma.tensor_maps[2].box == (32, 64)  # 32 fp32 columns of a 128-byte row, one consumer's rows
    assert tma.shared_bytes == 3 * 48 * 1024 + 128 * 256 * 4 + 1024
    assert SPEC.bytes_moved(problem) == 1000 * 4096 + 4096 * 4096 + 4 * 1000 * 4096
    assert SPEC.output_spec(problem).dtype == "float32"
    drawn = {"a": 1, "b": 2, "a_scale": 3, "b_scale": 4, "a_exact": 5, "b_exact": 6}
    assert SPEC.kernel_inputs(drawn, FP8) == {"a": 1, "b": 2, "a_scale": 3, "b_scale": 4}
    # a bf16 problem with fp8=true: one binary with dtype=e4m3's, over the e4m3 copies of its inputs
    both = SPEC.validate_problem({"layout": "nt", "fp8": True, "M": 1000})
    mixed = SPEC.render(FP8, both)
    assert mixed.code_digest() == SPEC.render(FP8, {**problem, "out_dtype": "bf16"}).code_digest()
    assert [m.buffer for m in mixed.tensor_maps] == ["a8", "b8"]
    drawn = {"a": 1, "b": 2, "a8": 3, "b8": 4, "a_scale": 5, "b_scale": 6}
    assert SPEC.kernel_inputs(drawn, FP8) == {"a8": 3, "b8": 4, "a_scale": 5, "b_scale": 6}
    assert SPEC.kernel_inputs(drawn, DEFAULT) == {"a": 1, "b": 2}
    assert (SPEC.max_error(FP8, both), SPEC.max_error(DEFAULT, both)) == (0.05, 1e-2)


def test_check_admits_fp8_in_k_major_layout_alone() -> None:
    fp8 = SPEC.validate_problem({"dtype": "e4m3", "layout": "nt", "out_dtype": "bf16"})
    assert SPEC.check(FP8, fp8, DEVICE) is None
    assert "use layout=nt" in SPEC.check(FP8, {**fp8, "layout": "nn"}, DEVICE)
    assert "set out_dtype" in SPEC.check(FP8, SPEC.validate_problem({"dtype": "e4m3", "layout": "nt"}), DEVICE)
    assert "block_k=128 for e4m3" in SPEC.check(FP8 | {"block_k": 64}, fp8, DEVICE)
    assert "block_k=64 for bf16" in SPEC.check(DEFAULT | {"block_k": 128}, SPEC.default_problem(), DEVICE)
    assert "for dtype=e4m3" in SPEC.check(DEFAULT, SPEC.validate_problem({"out_dtype": "fp32"}), DEVICE)
    assert SPEC.check(DEFAULT, SPEC.validate_problem({"out_dtype": "bf16"}), DEVICE) is None
    # an fp32 output's TMA rows: 4 floats make 16 bytes
    tma = FP8 | {"stages": 3, "epilogue": "tma_half"}  # a whole 128x256 fp32 buffer leaves no room
    fp32 = {**fp8, "out_dtype": "fp32"}
    assert "shared memory" in SPEC.check(tma | {"epilogue": "tma"}, fp32, DEVICE)
    assert SPEC.check(tma, {**fp32, "N": 1004}, DEVICE) is None
    assert "multiple of 4" in SPEC.check(tma, {**fp32, "N": 1002}, DEVICE)
    assert SPEC.validate_problem({"dtype": "e4m3", "out_dtype": "same"}) == SPEC.validate_problem({"dtype": "e4m3"})
    assert "precision=e4m3" in SPEC.check(DEFAULT | {"block_k": 128}, fp8, DEVICE)
    nt = SPEC.validate_problem({"layout": "nt"})
    assert "sets fp8=true" in SPEC.check(FP8, nt, DEVICE)
    assert SPEC.check(FP8, {**nt, "fp8": True}, DEVICE) is None
    assert "use layout=nt" in SPEC.check(FP8, SPEC.validate_problem({"fp8": True}), DEVICE)
    assert SPEC.check(DEFAULT, {**nt, "fp8": True}, DEVICE) is None  # the native configs beside them


def test_e4m3_quantization_and_the_reference_before_it() -> None:
    import torch

    from tuner.kernel_templates.e4m3 import E4M3_MAX
    from tuner.kernel_templates.gemm_cuda import quantize_e4m3

    padded = torch.randn(64, 40, generator=torch.Generator().manual_seed(0))
    padded[:, 32:] = 1000.0  # padding past the columns does not set the scale
    q, scale = quantize_e4m3(padded, 32)
    assert q.dtype == torch.float8_e4m3fn and q.shape == (64, 32) and q.stride() == (40, 1)
    assert float(q.float().abs().max()) == E4M3_MAX and scale.shape == (1,)
    x = padded[:, :32]
    assert float((q.float() * scale - x).norm() / x.norm()) < 0.04  # 3 mantissa bits
    b = torch.randn(48, 32)
    b8, b_scale = quantize_e4m3(b, 32)
    problem = SPEC.validate_problem({"dtype": "e4m3", "layout": "nt", "out_dtype": "fp32", "M": 64, "N": 48,
                                     "K": 32})
    inputs = {"a": q, "b": b8, "a_scale": scale, "b_scale": b_scale, "a_exact": x, "b_exact": b}
    assert torch.equal(SPEC.reference(inputs, problem), x @ b.T)


FP8_PROBE = r"""
#include "hopper.cuh"
using namespace hopper;
extern "C" __global__ void __launch_bounds__(128, 1) probe(float *out, int scale) {
  __shared__ alignas(1024) unsigned char tile[64 * 128];
  float d64[32], d128[64], d256[128];
  const u64 desc = smem_descriptor(tile, 16, 1024);
  wgmma_fence();
  WgmmaE4m3<64>::ss(d64, desc, desc, scale);
  WgmmaE4m3<128>::ss(d128, desc, desc, scale);
  WgmmaE4m3<256>::ss(d256, desc, desc, scale);
  wgmma_commit();
  wgmma_wait<0>();
  fence_registers(d64), fence_registers(d128), fence_registers(d256);
  float sum = 0;
  for (int i = 0; i < 32; i++) sum += d64[i] + d128[i] + d128[32 + i];
  for (int i = 0; i < 128; i++) sum += d256[i];
  out[threadIdx.x] = sum;
}
"""


def test_e4m3_wgmma_assembles_to_qgmma() -> None:
    require(_available(nvcc_path), "nvcc is not installed (set CUDA_HOME or install the CUDA toolkit)")
    require(_available(cuobjdump_path),
            "cuobjdump is not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    artifact = BACKEND.compile(Source("cuda", inline_headers(FP8_PROBE), "probe"), TARGET)
    assert artifact.error is None, artifact.log
    qgmma = [line for line in dump_sass(artifact.path).splitlines() if "QGMMA" in line]
    assert [n for n in ("64x64x32", "64x128x32", "64x256x32") if any(n + ".F32.E4M3.E4M3" in q for q in qgmma)] == [
        "64x64x32", "64x128x32", "64x256x32"]
