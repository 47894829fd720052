"""Attention forward on NVIDIA GPUs: a FlashAttention-2-style CUDA kernel (attention_cuda.cu).

Tensor cores via ``mma.sync`` m16n8k16 (Ampere and newer), so one template serves sm_80 to sm_90a.
The ``precision`` knob trades exactness for speed on purpose: ``fast_exp2`` uses the one-instruction
``ex2.approx.ftz``, ``fast_exp2_f16acc`` also accumulates each tile's P·V in fp16; the tuner keeps
their measured error and lets the Pareto front decide.
"""

from __future__ import annotations

import math
from importlib.resources import files

from .attention_problem import AttentionProblem, kv_group
from .spec import Config, Device, Param, Problem, Source

_TEMPLATE = files(__package__).joinpath("attention_cuda.cu").read_text()

# precision variant -> (FAST_EXP2, PV_F16_ACC) macros of the template
_PRECISION = {"exact": (0, 0), "fast_exp2": (1, 0), "fast_exp2_f16acc": (1, 1)}

# Every CUDA arch grants a block this much shared memory without opting in.
_DEFAULT_SHARED_BYTES = 48 * 1024
# Shared memory the hardware keeps for itself in every resident block (CUDA programming guide).
_RESERVED_SHARED_BYTES = 1024

# Registers of one SM; a thread gets at most 255 of them.
_SM_REGISTERS = 65536
_MAX_THREAD_REGISTERS = 255

# fp32 accumulator values a thread may keep (scores + output), by its register cap and whether P·V
# accumulates in fp16 (its per-tile partials take registers too). Measured with `nvcc
# --resource-usage` over the whole space for sm_80 and sm_90a: at 255 registers 160 never spill
# (96 with fp16 accumulation); at 128 registers 64 never spill, 80 and 96 often do.
_MAX_ACCUMULATORS = {(255, False): 160, (255, True): 96, (128, False): 64, (128, True): 64}
# Lazy rescaling with ex2.approx frees enough registers for FlashAttention-2's own D=128 tile
# (128x64, 4 warps: 192 accumulators) at the cost of a spill of at most MAX_SPILL_BYTES, which on H100
# ran 2-4 % faster than every spill-free tile at D=128, S=512 (bench/results/attention_vs_sdpa.candidates.json).
# With fp16 accumulation its partials take registers too: NVRTC 13.0 (the GPU machine's) spills 20
# bytes in that tile (3 stages, CI of 2026-12-04) and none in any admitted one of 128 accumulators.
_LAZY_FAST_ACCUMULATORS = {"fast_exp2": 192, "fast_exp2_f16acc": 128}
# Local-memory bytes per thread ptxas may spill in an admitted config (tests/test_cuda_compile.py).
MAX_SPILL_BYTES = 16


class AttentionCuda(AttentionProblem):
    description = ("softmax(Q·Kᵀ/√D [+ causal mask])·V, fp16/bf16 [B,H,S,D], FlashAttention-2-style "
                   "CUDA: mma.sync tensor cores, cp.async pipeline, online softmax")
    archs = ("sm_80", "sm_86", "sm_89", "sm_90", "sm_90a")
    family = "mma_sync"
    params = (
        Param("block_m", (64, 128), "query rows per thread block"),
        Param("block_n", (32, 64, 128), "keys per K/V tile"),
        Param("warps", (4, 8), "warps per block; each owns block_m/warps query rows (16 or 32)"),
        # Depth 1 (no overlap of loads and math) never won a seed shape in two full tunings on H100.
        Param("stages", (2, 3), "K/V tiles in shared memory at once (cp.async pipeline depth)"),
        Param("precision", tuple(_PRECISION),
              "exact exp2; ex2.approx.ftz; ex2.approx.ftz with fp16 P·V accumulation (fp16 only)"),
        Param("rescale", ("always", "lazy"),
              "rescale O at every new row max, or only once one grows by over 2^8 (exact either way)"),
        Param("occupancy", (8, 16),
              "warps per SM the registers are budgeted for: 16 caps a thread at 128 registers"),
    )
    def check(self, config: Config, problem: Problem, device: Device) -> str | None:
        if reason := self.check_problem(problem):
            return reason
        if problem["D"] not in (64, 128):
            return f"D={problem['D']}: the mma_sync family runs D=64 and D=128 (the Hopper family runs 256)"
        rows = config["block_m"] // config["warps"]
        if rows not in (16, 32):
            return f"block_m/warps = {rows} query rows per warp; the kernel needs 16 or 32"
        if config["precision"] == "fast_exp2_f16acc" and problem["dtype"] != "fp16":
            return "fp16 accumulation of P·V needs dtype=fp16 (the tensor cores have no bf16 accumulator)"
        if config["occupancy"] % config["warps"]:
            return f"occupancy {config['occupancy']} is not a whole number of {config['warps']}-warp blocks"
        accumulators = rows // 16 * (config["block_n"] + problem["D"]) // 8 * 4
        most = accumulator_budget(config)
        if accumulators > most:
            return (f"{accumulators} fp32 accumulators per thread (over {most} in {register_cap(config)} "
                    f"registers) spill: use more warps, a smaller block_n or a lower occupancy")
        limit = device.limits.get("max_shared_bytes", _DEFAULT_SHARED_BYTES)
        needed = shared_bytes(config, problem)
        if needed > limit:
            return f"needs {needed} bytes of shared memory, {device.arch} grants {limit}: fewer stages or smaller tiles"
        per_sm = device.limits.get("max_shared_bytes_per_sm", limit)
        blocks = min_blocks(config)
        if register_cap(config) < _MAX_THREAD_REGISTERS and blocks * (needed + _RESERVED_SHARED_BYTES) > per_sm:
            return (f"registers capped for {blocks} blocks per SM, but {blocks} blocks of {needed} bytes of "
                    f"shared memory do not fit one SM's {per_sm}: lower occupancy, fewer stages or smaller tiles")
        return None

    def render(self, config: Config, problem: Problem) -> Source:
        fast_exp2, f16_acc = _PRECISION[config["precision"]]
        defines = {
            "BLOCK_M": config["block_m"], "BLOCK_N": config["block_n"], "WARPS": config["warps"],
            "STAGES": config["stages"], "HEAD_DIM": problem["D"], "IS_BF16": int(problem["dtype"] == "bf16"),
            "FAST_EXP2": fast_exp2, "PV_F16_ACC": f16_acc,
            "LAZY_RESCALE": int(config["rescale"] == "lazy"), "MIN_BLOCKS": min_blocks(config),
        }
        header = "".join(f"#define {key} {value}\n" for key, value in defines.items())
        scale_log2 = math.log2(math.e) / math.sqrt(problem["D"])
        return Source(
            language="cuda", code=header + _TEMPLATE, entry="attention_fwd", options=("-O3",),
            scalars=(("int32", problem["S"]), ("int32", int(problem["causal"])), ("float32", scale_log2),
                     ("int32", kv_group(problem))),
            grid=(math.ceil(problem["S"] / config["block_m"]), problem["B"] * problem["H"], 1),
            block=(config["warps"] * 32, 1, 1), shared_bytes=shared_bytes(config, problem))


def accumulator_budget(config: Config) -> int:
    """fp32 accumulators a thread may keep without spilling more than MAX_SPILL_BYTES."""
    cap = register_cap(config)
    if cap == _MAX_THREAD_REGISTERS and config["rescale"] == "lazy" and config["precision"] != "exact":
        return _LAZY_FAST_ACCUMULATORS[config["precision"]]
    return _MAX_ACCUMULATORS[cap, bool(_PRECISION[config["precision"]][1])]


def min_blocks(config: Config) -> int:
    """Blocks per SM the kernel's launch bounds ask for."""
    return config["occupancy"] // config["warps"]


def register_cap(config: Config) -> int:
    """Registers a thread may use when ``min_blocks`` blocks share an SM."""
    return min(_MAX_THREAD_REGISTERS, _SM_REGISTERS // (min_blocks(config) * config["warps"] * 32))


def shared_bytes(config: Config, problem: Problem) -> int:
    """Dynamic shared memory of a block: the Q tile and ``stages`` tiles each of K and V."""
    rows = config["block_m"] + 2 * config["stages"] * config["block_n"]
    return rows * problem["D"] * 2

