"""The attention problem on NVIDIA GPUs, shared by every CUDA family of the ``attention`` kernel.

Each family (mma.sync, Hopper wgmma, ...) subclasses :class:`AttentionProblem` for its knobs,
constraints and rendering; the problem itself — its parameters, inputs, fp32 reference, output,
FLOPs, bytes and exact-variant error bounds — is defined once here, so a problem and a best answer
mean the same in every family (the registry checks that families agree on their problem).

Grouped-query attention: ``H_kv`` K/V heads, each shared by ``H / H_kv`` consecutive query heads
(query head ``h`` reads K/V head ``h // (H / H_kv)``, as ``torch.nn.functional.scaled_dot_product_attention``
with ``enable_gqa``); ``H_kv=0`` means as many K/V heads as query heads. ``H_kv`` is an optional
problem parameter: absent at 0 (and ``H_kv=H`` is stored as absent too), so the problems, study
names and best answers stored before it existed are those of ``H_kv=0``.

FP8: with ``fp8=true`` (an optional problem parameter, absent when false) a family may admit
``precision=e4m3`` configs, which read e4m3 copies of the 16-bit inputs made by a stated pre-pass
(:func:`fp8_inputs`: per-tensor scales, V transposed with its keys permuted as the kernel's P
fragments need); their error is measured against the same fp32 reference of the 16-bit inputs, so
it is what FP8 costs, and both precisions share one study and its front.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .e4m3 import e4m3_scale
from .spec import Config, KernelSpec, OutputSpec, Problem, ProblemParam

TORCH_DTYPE = {"fp16": "float16", "bf16": "bfloat16"}

# Relative L2 error of an exact variant: the rounding of its inputs' type.
EXACT_ERROR = {"fp16": 2e-3, "bf16": 1e-2}
# e4m3 keeps 3 mantissa bits: Q, K, V and P each rounded to it (2^-4 relative at worst).
E4M3_ERROR = 8e-2
FP8_INPUTS = ("q8", "k8", "vt8", "scales")
# For each 32 keys, the key the e4m3 P·V fragment's position L reads (attention_hopper.cu, top):
# a thread's score accumulators hold keys 2q, 2q+1, 8+2q, 9+2q (and 16 more), the fragment wants
# positions 4q..4q+3, so the transposed V's position L holds key V_KEY_ORDER[L].
V_KEY_ORDER = tuple(16 * (L // 16) + 2 * (L % 16 // 4) + L % 2 + 8 * (L % 4 // 2) for L in range(32))


# Grouped-query attention's K/V heads, a problem parameter of the CPU template too.
KV_HEADS = ProblemParam("H_kv", int, 0, minimum=0, optional=True,
                        doc="K/V heads, each shared by H/H_kv query heads (0: as many as H)")


class AttentionProblem(KernelSpec):
    """softmax(Q·Kᵀ/√D [+ causal mask])·V over [B,H,S,D] tensors; the families add the rest."""

    name = "attention"
    backend = "cuda"
    problem_params = (
        ProblemParam("B", int, 16, minimum=1, doc="batch"),
        ProblemParam("H", int, 96, minimum=1, doc="query heads"),
        KV_HEADS,
        ProblemParam("S", int, 512, minimum=1, doc="sequence length"),
        ProblemParam("D", int, 64, choices=(64, 128, 256), doc="head dimension"),
        ProblemParam("causal", bool, False, doc="mask keys after each query"),
        ProblemParam("dtype", str, "fp16", choices=tuple(TORCH_DTYPE), doc="input and output type"),
        ProblemParam("fp8", bool, False, optional=True,
                     doc="also search FP8 (e4m3) variants of the 16-bit inputs, where a family has them"),
    )

    def canonical_problem(self, problem: Problem) -> dict[str, Any]:
        return super().canonical_problem(without_full_kv(problem))

    def check_problem(self, problem: Problem) -> str | None:
        """The reason no config of any family can run ``problem``, or ``None``."""
        return kv_heads_reason(problem)

    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        import torch

        generator = torch.Generator(device="cuda").manual_seed(int(rng.integers(2**62)))
        dtype = getattr(torch, TORCH_DTYPE[problem["dtype"]])
        shapes = {"q": q_shape(problem), "k": kv_shape(problem), "v": kv_shape(problem)}
        inputs = {name: torch.randn(shape, generator=generator, device="cuda", dtype=torch.float32).to(dtype)
                  for name, shape in shapes.items()}
        return (inputs | fp8_inputs(inputs["q"], inputs["k"], inputs["v"])) if problem.get("fp8") else inputs

    def kernel_inputs(self, inputs: Mapping[str, Any], config: Config) -> dict[str, Any]:
        """q, k, v; for an e4m3 config their FP8 copies and scales instead."""
        names = FP8_INPUTS if is_e4m3(config) else ("q", "k", "v")
        return {name: inputs[name] for name in names}

    def output_spec(self, problem: Problem) -> OutputSpec:
        return OutputSpec(shape=q_shape(problem), dtype=TORCH_DTYPE[problem["dtype"]])

    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> Any:
        """float32 attention of the same rounded inputs (the memory-efficient fp32 SDPA kernel)."""
        import torch.nn.functional as F

        q, k, v = (inputs[name].float() for name in ("q", "k", "v"))
        if kv_heads(problem) != problem["H"]:
            k, v = (t.repeat_interleave(kv_group(problem), dim=1) for t in (k, v))
        return F.scaled_dot_product_attention(q, k, v, is_causal=bool(problem["causal"]))

    def flops(self, problem: Problem) -> float:
        full = 4.0 * problem["B"] * problem["H"] * problem["S"] ** 2 * problem["D"]
        return full / 2 if problem["causal"] else full

    def bytes_moved(self, problem: Problem) -> float:
        """Q and O once each, K and V once per K/V head (2-byte elements)."""
        rows = problem["B"] * problem["S"] * problem["D"]
        return 2.0 * rows * (2 * problem["H"] + 2 * kv_heads(problem))

    def max_error(self, config: Config, problem: Problem) -> float:
        # The exact variants' bounds are the rounding of their inputs' type; the inexact ones get
        # a looser bound and store their real error for the Pareto front.
        exact = EXACT_ERROR[problem["dtype"]]
        precision = config.get("precision", "exact")
        return exact if precision == "exact" else E4M3_ERROR if precision == "e4m3" else 2 * exact


def is_e4m3(config: Config) -> bool:
    """Whether ``config`` runs on the e4m3 copies (a family's ``precision=e4m3``)."""
    return config.get("precision") == "e4m3"


def fp8_inputs(q: Any, k: Any, v: Any) -> dict[str, Any]:
    """The pre-pass of the e4m3 configs: q, k, v [B, H(_kv), S, D] (16-bit, on the GPU) as e4m3
    with one fp32 scale each (``x ≈ x8.float() * scale``), V transposed to [B, H_kv, D, S'] with
    S' = S rounded up to 32 (zero-filled) and each 32 keys in V_KEY_ORDER; ``scales`` is
    [q, k, v]'s three."""
    import torch

    def quantized(x: Any) -> tuple[Any, Any]:
        scale = e4m3_scale(x)
        return (x.float() / scale).to(torch.float8_e4m3fn), scale

    (q8, q_scale), (k8, k_scale), (v8, v_scale) = quantized(q), quantized(k), quantized(v)
    batch, heads, length, dim = v8.shape
    padded = -(-length // 32) * 32
    blocks = torch.zeros((batch, heads, padded, dim), dtype=v8.dtype, device=v8.device)
    blocks[:, :, :length] = v8
    order = torch.tensor(V_KEY_ORDER, device=v8.device)
    permuted = blocks.view(batch, heads, padded // 32, 32, dim)[:, :, :, order]
    vt8 = permuted.reshape(batch, heads, padded, dim).transpose(2, 3).contiguous()
    return {"q8": q8.contiguous(), "k8": k8.contiguous(), "vt8": vt8,
            "scales": torch.stack([q_scale, k_scale, v_scale]).contiguous()}


def kv_heads(problem: Problem) -> int:
    """K/V heads of ``problem`` (``H_kv``, or ``H`` where it is 0)."""
    return problem.get("H_kv", 0) or problem["H"]


def kv_heads_reason(problem: Problem) -> str | None:
    """Why ``problem``'s ``H_kv`` cannot be, or ``None``."""
    if problem["H"] % kv_heads(problem):
        return f"H={problem['H']} is not a multiple of H_kv={kv_heads(problem)}: pick H_kv dividing H"
    return None


def kv_group(problem: Problem) -> int:
    """Query heads per K/V head."""
    return problem["H"] // kv_heads(problem)


def without_full_kv(problem: Problem) -> dict[str, Any]:
    """``problem`` with ``H_kv=H`` (plain multi-head attention) written as ``H_kv=0``."""
    if problem.get("H_kv") and problem["H_kv"] == problem.get("H"):
        return {**problem, "H_kv": 0}
    return dict(problem)


def q_shape(problem: Problem) -> tuple[int, int, int, int]:
    return (problem["B"], problem["H"], problem["S"], problem["D"])


def kv_shape(problem: Problem) -> tuple[int, int, int, int]:
    return (problem["B"], kv_heads(problem), problem["S"], problem["D"])
