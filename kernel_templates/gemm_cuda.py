"""C = A·B on Hopper: a warp-specialized wgmma/TMA GEMM (gemm_cuda.cu, primitives in hopper.cuh).

fp16 or bf16 in and out, or e4m3 in (FP8, per-tensor fp32 scales applied in the epilogue) and fp16,
bf16 or fp32 out; fp32 accumulation. ``layout`` ``nn`` multiplies A [M, K] by B [K, N]; ``nt``
multiplies by the transpose of W [N, K] (``x @ W.T``, a linear layer's weight as stored). FP8
wgmma reads both operands K-major, so FP8 admits ``nt`` alone. The problem sizes reach the kernel
as run-time arguments (scalars and tensor maps), and so do the raster order and persistence, so
the compiled variants depend on the tile knobs, types and layout alone: every one that check()
admits compiles in CI (tests/test_gemm_compile.py).

The MMA's input type is the knob ``precision``: ``native`` (the problem's dtype) or ``e4m3``. Two
kinds of problem reach FP8:

- ``dtype=e4m3`` (with ``out_dtype`` fp16, bf16 or fp32): the caller's inputs are FP8 already, as
  ``torch._scaled_mm`` takes them. They are drawn in fp32 and quantized per tensor (scale = amax /
  448, e4m3's largest finite value); the reference is the fp32 product before quantization.
- ``dtype=fp16/bf16`` with ``fp8=true``: the caller's 16-bit inputs, of which a pre-pass (in
  make_inputs here, the caller's own in production) makes per-tensor e4m3 copies for the
  ``precision=e4m3`` configs. Both precisions share the study and its front, their errors against
  the same fp32 product of the 16-bit inputs: ``tuner best --max-error`` picks FP8 where the bound
  admits its error. Without ``fp8`` (the default) only native configs are admitted.

Either way a trial's stored error is what FP8 costs, not only what the kernel adds to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

import numpy as np

from .e4m3 import e4m3_scale
from .headers import inline_headers
from .spec import Config, Device, KernelSpec, OutputSpec, Param, Problem, ProblemParam, Source, TensorMap

_TEMPLATE = files(__package__).joinpath("gemm_cuda.cu").read_text()

_TORCH_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "e4m3": "float8_e4m3fn", "fp32": "float32"}
_BYTES = {"fp16": 2, "bf16": 2, "e4m3": 1, "fp32": 4}
OUT_DTYPES = ("same", "fp16", "bf16", "fp32")
PRECISIONS = ("native", "e4m3")
# The rounding of the output type bounds the error (fp32 accumulation adds little). e4m3's bound is
# against the unquantized product: per-tensor quantization of normal inputs costs 0.037 relative L2
# whatever the shape and output type (0.0373-0.0375 at 128-512 x 64-4096 on the CPU), which 0.05
# admits with room; a kernel fault (a wrong tile, scale or layout) costs far more.
_MAX_ERROR = {"fp16": 2e-3, "bf16": 1e-2, "e4m3": 5e-2}

# fp32 accumulators a consumer thread keeps (WG_M x BLOCK_N / 128): beyond 128 they do not fit the
# 232 registers a consumer warpgroup gets after setmaxnreg (nvcc --resource-usage over the space).
MAX_ACCUMULATORS = 128
# ... and with split-K's reduction through distributed shared memory beside them, 64 (at 128, ptxas
# spills 20-28 bytes whatever the setmaxnreg split).
SPLIT_K_MAX_ACCUMULATORS = 64
# SMs of an H100/H200 SXM: what check() assumes where the device is not at hand.
DEFAULT_SM_COUNT = 132
# Tiles of consecutive output rows (or columns) a group of the raster order spans.
RASTER_GROUP = 8
# The shared memory a block asks for beyond its stages: slack to align the tiles to 1024 bytes.
_ALIGN_SLACK = 1024
# Shared memory of the stages a block keeps in flight, below which the loads' latency shows: a
# 128x128x64 stage feeds the tensor cores for about 0.3 us and a 128x256x64 one 0.6 us, against
# 0.6-1 us from L2 or memory, so 4 and 3 stages (the published Hopper GEMMs' depths). It also keeps
# the compiled set a size CI can build.
MIN_BYTES_IN_FLIGHT = 128 * 1024
# TMA moves rows of 16-byte multiples: inputs are stored with their rows padded to this many bytes.
_ROW_ALIGN_BYTES = 16


class GemmCuda(KernelSpec):
    name = "gemm"
    description = ("C = A·B (layout nt: A·Wᵀ), fp16/bf16 or e4m3 with per-tensor scales, fp32 accumulation; "
                   "Hopper wgmma + TMA, "
                   "warp-specialized producer/consumers, clusters with TMA multicast, persistent")
    backend = "cuda"
    archs = ("sm_90a",)
    params = (
        Param("block_m", (64, 128, 256), "output rows of a block's tile"),
        Param("block_n", (128, 192, 256),
              "output columns of a block's tile (the wgmma N; N=64 MMAs read B at twice the bytes per FLOP; "
              "192 fills the last wave where 128 and 256 leave it part-empty, e.g. 3000 = 15.6 x 192)"),
        Param("block_k", (64, 128), "K of a pipeline stage: 128 bytes of K, so 64 for fp16/bf16 (128 never won "
                                    "a row: see bench/GEMM_NOTES.md) and 128 for e4m3"),
        Param("stages", (2, 3, 4, 5, 6), "shared-memory stages of the TMA -> wgmma ring"),
        Param("consumers", (1, 2), "consumer warpgroups (cooperative: each on block_m/consumers rows of a tile)"),
        Param("schedule", ("cooperative", "pingpong"),
              "consumers on one tile together, or (two consumers, persistent) each on tiles of its own in turn, "
              "one's epilogue under the other's MMAs"),
        Param("cluster", (1, 2), "blocks of a cluster along M, sharing B tiles by TMA multicast"),
        Param("persistent", (False, True), "one block per SM looping over tiles, or one block per tile"),
        Param("raster", ("m", "n"), f"tile order: groups of {RASTER_GROUP} tile rows (m) or columns (n)"),
        Param("epilogue", ("direct", "tma", "tma_half"),
              "store C from registers, or through shared memory by TMA, overlapped with the next tile "
              "(tma_half: a buffer of half the tile's columns, stored in two rounds: room for another stage)"),
        Param("split_k", (1, 2), "blocks sharing a tile's K (a 2-block cluster adding its halves through "
                                 "distributed shared memory): for too few tiles to fill the GPU"),
        Param("precision", PRECISIONS, "the MMA's input type: the problem's dtype, or e4m3 (FP8, per-tensor "
                                       "scales; on a 16-bit problem where it sets fp8=true)", stored_default="native"),
        Param("stream_k", (False, True),
              "a persistent grid's part-empty last wave split along K over every block, the block holding a "
              "tile's last K block adding the others' partial sums", stored_default=False),
    )
    problem_params = (
        ProblemParam("M", int, 4096, minimum=1, doc="rows of A and C"),
        ProblemParam("N", int, 4096, minimum=1, doc="columns of B and C"),
        ProblemParam("K", int, 4096, minimum=1, doc="columns of A, rows of B"),
        ProblemParam("dtype", str, "bf16", choices=("fp16", "bf16", "e4m3"),
                     doc="input type (and output type, but for e4m3: see out_dtype)"),
        ProblemParam("layout", str, "nn", choices=("nn", "nt"),
                     doc="nn: B is [K, N]; nt: B is W [N, K] and C = A·Wᵀ (e4m3: nt only)"),
        ProblemParam("out_dtype", str, "same", choices=OUT_DTYPES, optional=True,
                     doc="output type: same as dtype for fp16/bf16; fp16, bf16 or fp32 for e4m3"),
        ProblemParam("fp8", bool, False, optional=True,
                     doc="fp16/bf16: also admit precision=e4m3 (inputs quantized per tensor) on the same front"),
    )

    def check(self, config: Config, problem: Problem, device: Device) -> str | None:
        refusal = check_types(config, problem)
        if refusal:
            return refusal
        row_align = _ROW_ALIGN_BYTES // _BYTES[out_dtype(problem)]
        if config["epilogue"] != "direct" and problem["N"] % row_align:
            return (f"the TMA epilogue stores rows of 16-byte multiples: N={problem['N']} is not a multiple "
                    f"of {row_align}")
        if config["split_k"] > 1:
            tiles = tile_count(config, problem)
            sms = device.limits.get("sm_count", DEFAULT_SM_COUNT)
            if tiles >= sms:
                return f"split-K is for fewer tiles than SMs: {tiles} tiles fill the {sms} SMs already"
            if problem["K"] <= config["block_k"]:
                return f"split-K needs more than one block_k of K (K={problem['K']})"
        return check_tiles(config, device, *element_bytes(config, problem)) or check_stream_k(config, problem, device)

    def render(self, config: Config, problem: Problem) -> Source:
        out = out_dtype(problem)
        in_bytes, out_bytes = element_bytes(config, problem)
        # the buffers kernel_inputs() hands this config's kernel
        a, b = ("a8", "b8") if in_bytes == 1 and problem["dtype"] != "e4m3" else ("a", "b")
        defines = {"BLOCK_M": config["block_m"], "BLOCK_N": config["block_n"], "BLOCK_K": config["block_k"],
                   "STAGES": config["stages"], "CONSUMERS": config["consumers"], "CLUSTER": config["cluster"],
                   "B_KMAJOR": int(problem["layout"] == "nt"),
                   "IS_BF16": int(problem["dtype"] == "bf16" and in_bytes == 2), "IN_FP8": int(in_bytes == 1),
                   "OUT_BF16": int(out == "bf16"), "OUT_BYTES": out_bytes,
                   "EPILOGUE_TMA": int(config["epilogue"] != "direct"), "EPILOGUE_COLS": epilogue_cols(config),
                   "PINGPONG": int(config["schedule"] == "pingpong"), "SPLIT_K": config["split_k"],
                   "STREAM_K": int(stream_k(config))}
        header = "".join(f"#define {key} {value}\n" for key, value in defines.items())
        cluster = config["cluster"]
        atom_k = 128 // in_bytes  # K elements of a 128-byte swizzled row: a TMA box's inner extent
        b_box = (atom_k, config["block_n"] // cluster) if problem["layout"] == "nt" else (64, config["block_k"])
        tiles_m = math.ceil(math.ceil(problem["M"] / config["block_m"]) / cluster) * cluster
        blocks = tiles_m * math.ceil(problem["N"] / config["block_n"]) * config["split_k"]
        if stream_k(config):  # every SM, however few the tiles (the launcher clamps it to the device)
            blocks = max(blocks, DEFAULT_SM_COUNT)
        return Source(
            language="cuda", code=inline_headers(header + _TEMPLATE), entry="gemm", options=("-O3",),
            scalars=(("int32", problem["M"]), ("int32", problem["N"]), ("int32", problem["K"]),
                     ("int32", int(config["raster"] == "m")), ("int32", RASTER_GROUP)),
            grid=(blocks, 1, 1), block=((config["consumers"] + 1) * 128, 1, 1),
            shared_bytes=shared_bytes(config, in_bytes, out_bytes),
            tensor_maps=(TensorMap(a, (atom_k, config["block_m"])), TensorMap(b, b_box))
            + ((TensorMap("out", (128 // out_bytes, warpgroup_rows(config))),) if config["epilogue"] != "direct"
               else ()),
            cluster=(cluster * config["split_k"], 1, 1), persistent=bool(config["persistent"]),
            workspace_bytes=workspace_bytes(config))

    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        """A and B; for ``fp8=true`` then their e4m3 copies and scales; for ``dtype=e4m3`` A and B
        quantized, their scales, then the fp32 originals the reference alone reads."""
        import torch

        generator = torch.Generator(device="cuda").manual_seed(int(rng.integers(2**62)))
        b_shape = (problem["K"], problem["N"]) if problem["layout"] == "nn" else (problem["N"], problem["K"])
        align = _ROW_ALIGN_BYTES // _BYTES[problem["dtype"]]

        def matrix(rows: int, cols: int) -> Any:
            padded = -(-cols // align) * align
            return torch.randn((rows, padded), generator=generator, device="cuda", dtype=torch.float32)

        # Views of the first columns, whose rows keep the padded stride (TMA reads 16-byte rows).
        (a, a_cols), (b, b_cols) = (matrix(problem["M"], problem["K"]), problem["K"]), (matrix(*b_shape), b_shape[1])
        if problem["dtype"] != "e4m3":
            dtype = getattr(torch, _TORCH_DTYPE[problem["dtype"]])
            a, b = a.to(dtype), b.to(dtype)
            inputs = {"a": a[:, :a_cols], "b": b[:, :b_cols]}
            if not problem.get("fp8", False):
                return inputs
            (a8, a_scale), (b8, b_scale) = quantize_e4m3(a.float(), a_cols), quantize_e4m3(b.float(), b_cols)
            return inputs | {"a8": a8, "b8": b8, "a_scale": a_scale, "b_scale": b_scale}
        (a8, a_scale), (b8, b_scale) = quantize_e4m3(a, a_cols), quantize_e4m3(b, b_cols)
        return {"a": a8, "b": b8, "a_scale": a_scale, "b_scale": b_scale,
                "a_exact": a[:, :a_cols], "b_exact": b[:, :b_cols]}

    def kernel_inputs(self, inputs: Mapping[str, Any], config: Config) -> dict[str, Any]:
        """A, B (and for FP8 their scales) as the config's kernel reads them."""
        if "a8" in inputs:  # a 16-bit problem with fp8=true
            names = ("a8", "b8", "a_scale", "b_scale") if config.get("precision") == "e4m3" else ("a", "b")
        else:
            names = ("a", "b", "a_scale", "b_scale") if "a_scale" in inputs else ("a", "b")
        return {name: inputs[name] for name in names}

    def output_spec(self, problem: Problem) -> OutputSpec:
        return OutputSpec(shape=(problem["M"], problem["N"]), dtype=_TORCH_DTYPE[out_dtype(problem)])

    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> Any:
        """fp32 matmul of the same rounded inputs (for e4m3, of the inputs before quantization)."""
        exact = problem["dtype"] == "e4m3"
        a, b = (inputs["a_exact"], inputs["b_exact"]) if exact else (inputs["a"].float(), inputs["b"].float())
        return a @ (b if problem["layout"] == "nn" else b.T)

    def flops(self, problem: Problem) -> float:
        return 2.0 * problem["M"] * problem["N"] * problem["K"]

    def bytes_moved(self, problem: Problem) -> float:
        m, n, k = problem["M"], problem["N"], problem["K"]
        return float(_BYTES[problem["dtype"]] * (m * k + k * n) + _BYTES[out_dtype(problem)] * m * n)

    def max_error(self, config: Config, problem: Problem) -> float:
        return _MAX_ERROR["e4m3" if element_bytes(config, problem)[0] == 1 else problem["dtype"]]


def out_dtype(problem: Problem) -> str:
    """The output type: ``out_dtype``, or the input type where that is ``same``."""
    named = problem.get("out_dtype", "same")
    return problem["dtype"] if named == "same" else named


def precision(config: Config) -> str:
    """The MMA's input type of ``config`` (``native`` where a config stored before the knob has none)."""
    return config.get("precision", "native")  # the Param's stored_default


def stream_k(config: Config) -> bool:
    """Whether ``config`` splits the last wave along K (False where a config stored before the knob has none)."""
    return bool(config.get("stream_k", False))  # the Param's stored_default


def tile_count(config: Config, problem: Problem) -> int:
    """Output tiles of the problem (not rounded to clusters)."""
    return math.ceil(problem["M"] / config["block_m"]) * math.ceil(problem["N"] / config["block_n"])


def stream_k_grid(tiles: int, sms: int) -> int:
    """Blocks of a stream-K launch: render asks for max(tiles, DEFAULT_SM_COUNT), the launcher starts
    at most one a SM (every admitted config takes over half an SM's shared memory)."""
    return min(max(tiles, DEFAULT_SM_COUNT), sms)


def check_stream_k(config: Config, problem: Problem, device: Device) -> str | None:
    """Why stream-K does not fit the config and problem, or ``None`` (also for configs without it)."""
    if not stream_k(config):
        return None
    if (not config["persistent"] or config["schedule"] != "cooperative" or config["cluster"] > 1
            or config["split_k"] > 1):
        return ("stream-K splits a persistent grid's last wave along K: it needs persistent=True, the cooperative "
                "schedule, cluster=1 and split_k=1")
    tiles = tile_count(config, problem)
    grid = stream_k_grid(tiles, device.limits.get("sm_count", DEFAULT_SM_COUNT))
    if tiles % grid == 0:
        return (f"stream-K is for a part-empty last wave: {tiles} tiles fill {grid} blocks in "
                f"{tiles // grid} whole waves")
    if tiles % grid * math.ceil(problem["K"] / config["block_k"]) * grid >= 2**31:
        return "stream-K counts K blocks in 32 bits: K is too long for it"
    return None


def workspace_bytes(config: Config) -> int:
    """Global memory a block of a stream-K launch needs: a slot of fp32 partial sums of its tile and a
    flag per consumer (0 without stream-K)."""
    return (config["block_m"] * config["block_n"] + config["consumers"]) * 4 if stream_k(config) else 0


def element_bytes(config: Config, problem: Problem) -> tuple[int, int]:
    """Bytes of an input element as the kernel reads it and of an output element."""
    fp8 = problem["dtype"] == "e4m3" or precision(config) == "e4m3"
    return 1 if fp8 else _BYTES[problem["dtype"]], _BYTES[out_dtype(problem)]


def check_types(config: Config, problem: Problem) -> str | None:
    """Why the input and output types, precision, layout and block_k do not go together, or ``None``."""
    dtype, named, mma = problem["dtype"], problem.get("out_dtype", "same"), precision(config)
    if dtype == "e4m3" and mma != "e4m3":
        return "e4m3 inputs take precision=e4m3"
    if dtype != "e4m3" and mma == "e4m3" and not problem.get("fp8", False):
        return f"precision=e4m3 quantizes {dtype} inputs where the problem sets fp8=true"
    if mma == "e4m3" and problem["layout"] != "nt":
        return "e4m3 wgmma reads both operands K-major: use layout=nt (B as W [N, K]); nn is not admitted"
    if dtype == "e4m3" and named == "same":
        return "e4m3 inputs write fp16, bf16 or fp32: set out_dtype"
    if dtype != "e4m3" and named not in ("same", dtype):
        return f"{dtype} inputs write {dtype}: out_dtype other than it is for dtype=e4m3"
    in_bytes = element_bytes(config, problem)[0]
    if mma == "e4m3" and config["block_n"] == 192:
        return "e4m3 wgmma runs block_n 128 or 256"
    if problem["layout"] == "nn" and config["cluster"] > 1 and config["block_n"] % 128:
        return "a 2-block cluster shares MN-major B in 64-column halves: block_n 128 or 256 with layout nn"
    if config["block_k"] * in_bytes != 128:
        return (f"a stage's K is one 128-byte swizzled row: block_k={128 // in_bytes} "
                f"for {'e4m3' if in_bytes == 1 else dtype}")
    return None


def quantize_e4m3(padded: Any, cols: int) -> tuple[Any, Any]:
    """The first ``cols`` columns of ``padded`` (fp32) as e4m3, a view keeping its row stride, and
    their one fp32 scale (a 1-element tensor): ``x ≈ q.float() * scale``, the largest magnitude
    mapped to e4m3's largest finite value."""
    import torch

    scale = e4m3_scale(padded[:, :cols]).reshape(1)
    return (padded / scale).to(torch.float8_e4m3fn)[:, :cols], scale


def check_tiles(config: Config, device: Device, in_bytes: int = 2, out_bytes: int = 2) -> str | None:
    """Why a tile configuration cannot run (or would spill), or ``None``: the problem's sizes are
    run-time arguments, so it does not matter here."""
    pingpong = config["schedule"] == "pingpong"
    if pingpong and (config["consumers"] != 2 or not config["persistent"] or config["split_k"] > 1):
        return "the ping-pong schedule takes tiles in turn: it needs consumers=2, persistent=True and split_k=1"
    rows = warpgroup_rows(config)
    if rows not in (64, 128):
        return (f"{rows} rows per consumer warpgroup (block_m, over consumers unless ping-pong); "
                "the kernel needs 64 or 128")
    if config["block_n"] == 192 and (config["block_m"], config["consumers"], pingpong) != (128, 2, False):
        return "block_n 192 fills the waves of 128-row cooperative tiles: block_m 128, 2 consumers, cooperative"
    if config["epilogue"] == "tma_half" and config["block_n"] % 128:
        return "tma_half stores a tile in two 64-column-aligned halves: block_n 128 or 256"
    accumulators = rows * config["block_n"] // 128
    if accumulators > MAX_ACCUMULATORS:
        return (f"{accumulators} fp32 accumulators per consumer thread (over {MAX_ACCUMULATORS}) spill: "
                f"use more consumers, a smaller block_m or block_n")
    limit = device.limits.get("max_shared_bytes", 0)
    needed = shared_bytes(config, in_bytes, out_bytes) + static_shared_bytes(config)
    if needed > limit:
        return f"needs {needed} bytes of shared memory, {device.arch} grants {limit}: fewer stages or smaller tiles"
    in_flight = config["stages"] * stage_bytes(config, in_bytes)
    if in_flight < MIN_BYTES_IN_FLIGHT:
        return (f"{config['stages']} stages keep {in_flight // 1024} KB in flight, under "
                f"{MIN_BYTES_IN_FLIGHT // 1024} KB: more stages")
    if config["split_k"] > 1:
        if config["cluster"] > 1 or config["persistent"]:
            return "split-K runs one tile per 2-block cluster: it needs cluster=1 and persistent=False"
        if accumulators > SPLIT_K_MAX_ACCUMULATORS:
            return (f"split-K's reduction with {accumulators} accumulators per thread spills (over "
                    f"{SPLIT_K_MAX_ACCUMULATORS}): a smaller tile or more consumers")
        if config["block_m"] * config["block_n"] * 4 > in_flight:
            return "split-K's fp32 partial sums reuse the stages' shared memory, which is too small for them"
    whole: Config = {**config, "epilogue": "tma"}
    if (config["epilogue"] == "tma_half"
            and shared_bytes(whole, in_bytes, out_bytes) + static_shared_bytes(config) <= limit):
        return "tma_half is for tiles whose whole output buffer leaves no room for the stages: use tma"
    return None


def warpgroup_rows(config: Config) -> int:
    """Output rows of a consumer warpgroup's tile."""
    return config["block_m"] if config["schedule"] == "pingpong" else config["block_m"] // config["consumers"]


def epilogue_cols(config: Config) -> int:
    """Columns of the TMA epilogue's buffer (a warpgroup's rows each)."""
    return config["block_n"] // 2 if config["epilogue"] == "tma_half" else config["block_n"]


def _output_bytes(config: Config, out_bytes: int) -> int:
    if config["epilogue"] == "direct":
        return 0
    buffers = config["consumers"] if config["schedule"] == "pingpong" else 1
    return buffers * config["block_m"] * epilogue_cols(config) * out_bytes


def stage_bytes(config: Config, in_bytes: int = 2) -> int:
    return (config["block_m"] + config["block_n"]) * config["block_k"] * in_bytes


def shared_bytes(config: Config, in_bytes: int = 2, out_bytes: int = 2) -> int:
    """Dynamic shared memory of a block: the ring of stages, the TMA epilogue's buffers (one per
    consumer's tile) and the alignment slack (16-bit elements unless told)."""
    return config["stages"] * stage_bytes(config, in_bytes) + _output_bytes(config, out_bytes) + _ALIGN_SLACK


def static_shared_bytes(config: Config) -> int:
    """The full and empty mbarriers of every stage (8 bytes each)."""
    return 2 * 8 * config["stages"]
