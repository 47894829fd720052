"""Attention forward on the CPU: a tiled, online-softmax C kernel (attention_cpu.c) and its knobs.

The knobs trade speed against exactness on purpose: a polynomial exp and float accumulation are
faster and less exact than libm and double, and the tuner keeps both ends of that trade on its
Pareto front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

import numpy as np

from .attention_problem import KV_HEADS, kv_group, kv_heads, kv_heads_reason, without_full_kv
from .spec import Config, Device, KernelSpec, OutputSpec, Param, Problem, ProblemParam, Source

_TEMPLATE = files(__package__).joinpath("attention_cpu.c").read_text()

# exp choice -> polynomial degree in the C template (0 is libm)
_EXP_DEGREE = {"libm": 0, "poly3": 3, "poly2": 2}

# The C kernel keeps one tile's state on the stack of each OpenMP thread.
_MAX_TILE_BYTES = 1 << 20

# float64 scores the reference may hold at once (it works over heads in chunks of this size)
_REFERENCE_CHUNK_BYTES = 256 << 20


class AttentionCpu(KernelSpec):
    name = "attention"
    description = "softmax(Q·Kᵀ·scale [+ causal mask])·V, float32 [B,H,S,D], tiled C with online softmax"
    backend = "cpu"
    archs = ("cpu",)
    params: tuple[Param, ...] = (
        Param("block_m", (8, 16, 32, 64), "query rows per tile"),
        Param("block_n", (16, 32, 64, 128), "keys per tile"),
        Param("unroll", (1, 2, 4, 8), "D steps (Q·Kᵀ) or keys (P·V) folded into each pass over a row"),
        Param("threads", (1, 2), "OpenMP threads over (batch, head, query tile)"),
        Param("accum", ("float", "double"), "type the scores, softmax state and outputs accumulate in"),
        Param("exp", tuple(_EXP_DEGREE), "libm exp, or a polynomial exp of degree 3 or 2 (faster, less exact)"),
        Param("fast_math", (False, True), "compile with -ffast-math"),
        Param("march", ("generic", "native"), "-march=native: this host's vector units"),
    )
    problem_params = (
        ProblemParam("B", int, 1, minimum=1, doc="batch"),
        ProblemParam("H", int, 4, minimum=1, doc="query heads"),
        KV_HEADS,
        ProblemParam("S", int, 256, minimum=1, doc="sequence length"),
        ProblemParam("D", int, 64, minimum=1, doc="head dimension"),
        ProblemParam("causal", bool, False, doc="mask keys after each query"),
    )

    def canonical_problem(self, problem: Problem) -> dict[str, Any]:
        return super().canonical_problem(without_full_kv(problem))

    def check(self, config: Config, problem: Problem, device: Device) -> str | None:
        if reason := kv_heads_reason(problem):
            return reason
        cores = device.limits.get("cores")
        if cores is not None and config["threads"] > cores:
            return f"threads={config['threads']} exceeds the {cores} cores of this machine"
        for param in self.params[:2]:  # block_m, block_n
            reason = _oversized_tile(param.name, config[param.name], param.choices, problem["S"])
            if reason:
                return reason
        tile_bytes = _tile_bytes(config, problem["D"])
        if tile_bytes > _MAX_TILE_BYTES:
            return (f"one tile's state is {tile_bytes >> 10} KiB, over the {_MAX_TILE_BYTES >> 10} KiB "
                    f"a thread may keep on its stack: choose smaller block_m/block_n or float accumulation")
        return None

    def render(self, config: Config, problem: Problem) -> Source:
        defines = {
            "BLOCK_M": config["block_m"], "BLOCK_N": config["block_n"], "HEAD_DIM": problem["D"],
            "CAUSAL": int(problem["causal"]), "THREADS": config["threads"], "UNROLL": config["unroll"],
            "ACC": config["accum"], "EXP_DEGREE": _EXP_DEGREE[config["exp"]],
        }
        header = "".join(f"#define {key} {value}\n" for key, value in defines.items())
        options = ["-O3", "-fopenmp", "-lm"]
        if config["fast_math"]:
            options.append("-ffast-math")
        if config["march"] == "native":
            options.append("-march=native")
        scalars = (("int32", problem["B"]), ("int32", problem["H"]), ("int32", problem["S"]),
                   ("float32", 1.0 / math.sqrt(problem["D"])), ("int32", kv_group(problem)))
        return Source(language="c", code=header + _TEMPLATE, entry="attention_fwd",
                      options=tuple(options), scalars=scalars)

    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        kv = (problem["B"], kv_heads(problem), problem["S"], problem["D"])
        shapes = {"q": _shape(problem), "k": kv, "v": kv}
        return {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()}

    def output_spec(self, problem: Problem) -> OutputSpec:
        return OutputSpec(shape=_shape(problem), dtype="float32")

    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> np.ndarray:
        seq, dim = problem["S"], problem["D"]
        q, k, v = (np.asarray(inputs[n], dtype=np.float64) for n in ("q", "k", "v"))
        k, v = (np.repeat(t, kv_group(problem), axis=1) for t in (k, v))  # query head h reads h // group
        q, k, v = (t.reshape(-1, seq, dim) for t in (q, k, v))
        out = np.empty_like(q)
        chunk = max(1, _REFERENCE_CHUNK_BYTES // (8 * seq * seq))
        for start in range(0, q.shape[0], chunk):
            part = slice(start, start + chunk)
            out[part] = _softmax_attention(q[part], k[part], v[part], problem["causal"])
        return out.reshape(_shape(problem))

    def flops(self, problem: Problem) -> float:
        full = 4.0 * problem["B"] * problem["H"] * problem["S"] ** 2 * problem["D"]
        return full / 2 if problem["causal"] else full

    def bytes_moved(self, problem: Problem) -> float:
        """Q and O once each, K and V once per K/V head (4-byte elements)."""
        return 4.0 * problem["B"] * problem["S"] * problem["D"] * (2 * problem["H"] + 2 * kv_heads(problem))

    def max_error(self, config: Config, problem: Problem) -> float:
        # libm variants are exact up to float rounding; a looser bound would hide their bugs.
        return 1e-4 if config["exp"] == "libm" else 1e-2


def _shape(problem: Problem) -> tuple[int, int, int, int]:
    return (problem["B"], problem["H"], problem["S"], problem["D"])


def _oversized_tile(name: str, value: int, choices: tuple[int, ...], seq: int) -> str | None:
    """A tile is pointless when a smaller choice already covers the whole sequence in one tile."""
    covering = [c for c in choices if c >= seq]
    if covering and value > min(covering):
        return f"{name}={value} exceeds S={seq}: {name}={min(covering)} already covers it in one tile"
    return None


def _tile_bytes(config: Config, dim: int) -> int:
    m, n = config["block_m"], config["block_n"]
    elements = 2 * m * dim + dim * n + m * n + 2 * m
    return elements * (8 if config["accum"] == "double" else 4)


def _softmax_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
    if causal:
        seq = q.shape[1]
        scores[:, np.triu(np.ones((seq, seq), dtype=bool), k=1)] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights @ v
