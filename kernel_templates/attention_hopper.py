"""Attention forward on Hopper: a FlashAttention-3-style wgmma/TMA kernel (attention_hopper.cu).

Warp-specialized (a TMA producer warp, 1-3 consumer warpgroups of 64 query rows), P·V with P in
registers, the softmax overlapped with the matrix products inside a warpgroup and/or across
warpgroups (ping-pong), a persistent grid (longest tiles first when causal), optionally 2-block
clusters sharing K/V by TMA multicast and a TMA-store epilogue. Head dims 64, 128 and
256, grouped-query attention, any S. ``precision=e4m3`` (on problems with ``fp8=true``) runs both
products on FP8 wgmma over e4m3 copies of the inputs (attention_problem.fp8_inputs). S, B, H, the
causal flag and the K/V grouping are run-time arguments, so the compiled variants depend on the
tile knobs, D, dtype and precision alone: every one that check() admits compiles in CI
(tests/test_attention_hopper_compile.py).
"""

from __future__ import annotations

import math
from importlib.resources import files

from .attention_problem import AttentionProblem, is_e4m3, kv_heads
from .headers import inline_headers
from .spec import Config, Device, Param, Problem, Source, TensorMap

_TEMPLATE = files(__package__).joinpath("attention_hopper.cu").read_text()

# fp32 values a consumer thread may keep live (output + scores, + the previous tile's P while the
# next scores land with intra-warpgroup overlap) without spilling, by consumer warpgroups: ptxas
# over the whole space (tests/test_attention_hopper_compile.py). A cluster's producer takes 8
# registers from each of 2-3 consumers (it spills with fewer than 40): less, by overlap mode.
_LIVE_BUDGET = {1: 176, 2: 176, 3: 104}
_CLUSTER_BUDGET = {("serial", 2): 150, ("intra", 2): 172, ("serial", 3): 95, ("intra", 3): 104}
# Bytes of K/V one section of heads may keep in L2 (50 MB on the H100/H200) while its tiles run.
L2_SECTION_BYTES = 24 * 1024 * 1024
# The shared memory a block asks for beyond its tiles: slack to align them to 1024 bytes.
_ALIGN_SLACK = 1024
_OUT_BYTES = 2  # O is fp16 or bf16 at every precision
PRECISIONS = ("exact", "e4m3")
# FP8 reads V transposed, a tile row of block_n keys one swizzled chunk (64 or 128 bytes).
_FP8_BLOCK_N = (64, 128)


class AttentionHopper(AttentionProblem):
    description = ("softmax(Q·Kᵀ/√D [+ causal mask])·V, fp16/bf16 [B,H,S,D], FlashAttention-3-style "
                   "Hopper kernel: wgmma, TMA K/V ring, warp specialization, overlapped softmax, persistent")
    archs = ("sm_90a",)
    family = "wgmma"
    params = (
        Param("block_m", (64, 128, 192), "query rows per block: 1-3 consumer warpgroups of 64"),
        Param("block_n", (64, 80, 96, 112, 128, 144, 160, 176, 192), "keys per K/V tile (the wgmma N of Q·Kᵀ)"),
        Param("stages", (2, 3), "K/V tiles in the shared-memory ring"),
        Param("overlap", ("serial", "intra"),
              "intra: issue the next tile's Q·Kᵀ with this tile's P·V and run the softmax under them"),
        Param("pingpong", (False, True), "consumer warpgroups take turns at the tensor cores (2-3 of them)"),
        Param("epilogue", ("direct", "tma"),
              "O stored from registers, or staged through shared memory and stored by TMA (clipped at S)"),
        Param("cluster", (1, 2),
              "blocks of a cluster on adjacent query tiles of one head, sharing K/V by TMA multicast"),
        Param("precision", PRECISIONS, "exact: the problem's 16-bit inputs; e4m3: FP8 products over e4m3 "
                                       "copies (problems with fp8=true)", stored_default="exact"),
        Param("poly_exp2", (0, 25, 50),
              "percent of the softmax's exp2 computed by a polynomial on the FMA pipe instead of MUFU "
              "(e4m3, where FP8's doubled MMA rate leaves MUFU the bound)", stored_default=0),
    )

    def check(self, config: Config, problem: Problem, device: Device) -> str | None:
        if reason := self.check_problem(problem):
            return reason
        if is_e4m3(config) and not problem.get("fp8", False):
            return "precision=e4m3 quantizes the 16-bit inputs where the problem sets fp8=true"
        if config.get("poly_exp2", 0) and not is_e4m3(config):
            return ("poly_exp2 moves exp2 off MUFU where FP8 products make the softmax the bound: "
                    "precision=e4m3 only (16-bit products leave MUFU time to spare)")
        return check_tiles(config, problem["D"], device)

    def render(self, config: Config, problem: Problem) -> Source:
        defines = {"BLOCK_M": config["block_m"], "BLOCK_N": config["block_n"], "HEAD_DIM": problem["D"],
                   "STAGES": config["stages"], "IS_BF16": int(problem["dtype"] == "bf16"), "FP8": int(is_e4m3(config)),
                   "OVERLAP_INTRA": int(config["overlap"] == "intra"), "PINGPONG": int(config["pingpong"]),
                   "EPILOGUE_TMA": int(config["epilogue"] == "tma"), "CLUSTER": config["cluster"],
                   "POLY_EVERY": 100 // config["poly_exp2"] if config.get("poly_exp2", 0) else 0}
        header = "".join(f"#define {key} {value}\n" for key, value in defines.items())
        b, h, s, d = problem["B"], problem["H"], problem["S"], problem["D"]
        group = h // kv_heads(problem)
        cluster, kv_rows = config["cluster"], config["block_n"] // config["cluster"]
        tiles = math.ceil(math.ceil(s / config["block_m"]) / cluster) * cluster * b * h
        if is_e4m3(config):  # rows of D bytes (a 64-byte swizzle at D=64); V transposed, rows of block_n keys
            chunk = min(d, 128)
            maps = (TensorMap("q8", (chunk, config["block_m"], 1, 1), swizzle=chunk),
                    TensorMap("k8", (chunk, kv_rows, 1, 1), swizzle=chunk),
                    TensorMap("vt8", (config["block_n"], d, 1, 1), swizzle=config["block_n"]))
        else:
            maps = (TensorMap("q", (64, config["block_m"], 1, 1)), TensorMap("k", (64, kv_rows, 1, 1)),
                    TensorMap("v", (64, kv_rows, 1, 1)))
        return Source(
            language="cuda", code=inline_headers(header + _TEMPLATE), entry="attention_fwd", options=("-O3",),
            scalars=(("int32", b), ("int32", h), ("int32", s), ("int32", group), ("int32", int(problem["causal"])),
                     ("int32", section_heads(problem)), ("float32", math.log2(math.e) / math.sqrt(d))),
            grid=(tiles, 1, 1), block=((consumers(config) + 1) * 128, 1, 1), shared_bytes=shared_bytes(config, d),
            tensor_maps=maps + ((TensorMap("out", (64, 64, 1, 1)),) if config["epilogue"] == "tma" else ()),
            cluster=(cluster, 1, 1), persistent=True)


def consumers(config: Config) -> int:
    return config["block_m"] // 64


def live_values(config: Config, head_dim: int) -> int:
    """fp32 (or packed 16-bit pair) registers a consumer thread keeps live at its peak."""
    scores, probabilities = config["block_n"] // 2, config["block_n"] // (8 if is_e4m3(config) else 4)
    return head_dim // 2 + scores + (probabilities if config["overlap"] == "intra" else 0)


def check_tiles(config: Config, head_dim: int, device: Device) -> str | None:
    """Why a tile configuration cannot run (or would spill) at this head dim, or ``None``: the
    problem's sizes are run-time arguments, so nothing else matters here."""
    if config["pingpong"] and consumers(config) == 1:
        return "ping-pong takes turns between consumer warpgroups: it needs block_m 128 or 192"
    if is_e4m3(config) and (config["cluster"] > 1 or config["block_n"] not in _FP8_BLOCK_N):
        return (f"precision=e4m3 runs with cluster 1 and block_n {' or '.join(map(str, _FP8_BLOCK_N))} "
                "(a transposed V tile row is one swizzled chunk)")
    live, budget = live_values(config, head_dim), _LIVE_BUDGET[consumers(config)]
    if config["cluster"] > 1 and consumers(config) > 1:
        budget = _CLUSTER_BUDGET[config["overlap"], consumers(config)]
    if live > budget:
        return (f"{live} live values per consumer thread (over {budget} with {consumers(config)} consumer "
                f"warpgroups, cluster {config['cluster']}) spill: a smaller block_n or block_m, or overlap=serial")
    limit = device.limits.get("max_shared_bytes", 0)
    needed = shared_bytes(config, head_dim) + static_shared_bytes(config)
    if needed > limit:
        return f"needs {needed} bytes of shared memory, {device.arch} grants {limit}: fewer stages or smaller tiles"
    return None


def shared_bytes(config: Config, head_dim: int) -> int:
    """Dynamic shared memory: the Q tile, ``stages`` K and V tiles, the output buffer of the TMA
    epilogue (as large as Q: it cannot share Q's, which the next tile's load refills at once), the
    alignment slack."""
    out_rows = config["block_m"] if config["epilogue"] == "tma" else 0
    rows = config["block_m"] + 2 * config["stages"] * config["block_n"]
    return rows * head_dim * element_bytes(config) + out_rows * head_dim * _OUT_BYTES + _ALIGN_SLACK


def element_bytes(config: Config) -> int:
    """Of Q, K and V as the kernel reads them."""
    return 1 if is_e4m3(config) else 2


def static_shared_bytes(config: Config) -> int:
    """The Q full/empty mbarriers and the K and V full/empty ones of every stage (8 bytes each)."""
    return 8 * (2 + 4 * config["stages"])


def section_heads(problem: Problem) -> int:
    """Query heads whose tiles run side by side: as many as keep their K/V within L2_SECTION_BYTES."""
    group = problem["H"] // kv_heads(problem)
    per_head = 2 * problem["S"] * problem["D"] * 2 / group  # 16-bit K and V (e4m3: half, so conservative)
    return max(1, min(problem["B"] * problem["H"], int(L2_SECTION_BYTES // per_head)))
