"""``tuner.runtime.attention``: the tuned attention kernel, a drop-in for causal or full SDPA.

``attention(q, k, v, causal)`` computes ``softmax(q·kᵀ/√D [+ causal mask])·v`` for [B, H, S, D]
tensors: on a GPU (fp16, bf16) by the CUDA template, on the CPU (float32) by the C one. Calls the
templates do not cover (other ranks, lengths or dtypes, cross-attention, inputs that need
gradients) and shapes with no stored config within the bound run PyTorch's
``scaled_dot_product_attention`` instead.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from tuner.errors import UsageError
from tuner.kernel_templates import SpecError, problem_spec

from . import ops
from .answers import NoAnswer
from .devices import arch_of
from .runtime import Request, Tuned, current

FALLBACK = "torch.nn.functional.scaled_dot_product_attention"
_DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16"}


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, *,
              max_error: float | None = None) -> torch.Tensor:
    """Attention of [B, H, S, D] tensors by the stored best config within ``max_error``
    (relative L2; None: any config that passed the template's own bound when tuned)."""
    if ops.needs_grad(q, k, v):
        return _sdpa(q, k, v, causal)
    if ops.eager(q):  # a plain call: the implementation itself, no dispatcher
        return _attention(q, k, v, causal, max_error)
    return torch.ops.tuner.attention(q, k, v, causal, max_error)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
               max_error: float | None = None) -> torch.Tensor:
    runtime = current()
    key = ("attention", q.shape, k.shape, v.shape, q.dtype, k.dtype, v.dtype, q.device, k.device,
           v.device, causal, max_error)
    plan = runtime.plans.get(key)
    if plan is None:
        plan = runtime.plan(key, lambda: _request(q, k, v, causal, max_error), kernel="attention",
                            fallback=FALLBACK)
    if isinstance(plan, Tuned):
        return plan((q, k, v))
    runtime.missing(key, plan)
    return _sdpa(q, k, v, causal)


def _fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
          max_error: float | None = None) -> torch.Tensor:
    return q.new_empty(q.shape)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    # Contiguous like the tuned kernel's output, so the fake implementation holds for both.
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal).contiguous()


def _request(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
             max_error: float | None) -> Request:
    try:
        spec = problem_spec("attention", arch_of(q.device))  # the default family (mma_sync on CUDA)
    except (SpecError, UsageError) as exc:  # no template for this device, or an unknown GPU
        raise NoAnswer(str(exc)) from None
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise NoAnswer(f"the tuned kernels take q, k and v of one shape [B, H, S, D] (got "
                       f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)})")
    if not (q.dtype == k.dtype == v.dtype and q.device == k.device == v.device):
        raise NoAnswer("q, k and v differ in dtype or device")
    batch, heads, length, dim = q.shape
    problem: dict[str, Any] = {"B": batch, "H": heads, "S": length, "D": dim, "causal": bool(causal)}
    if any(p.name == "dtype" for p in spec.problem_params):
        problem["dtype"] = _DTYPES.get(q.dtype, str(q.dtype))
    try:
        problem = spec.validate_problem(problem)
    except ValueError as exc:
        raise NoAnswer(f"the {spec.backend} template does not cover this call: {exc}") from None
    computes = spec.output_spec(problem).dtype
    if str(q.dtype).removeprefix("torch.") != computes:
        raise NoAnswer(f"the {spec.backend} template computes {computes}, not {q.dtype}")
    return Request(spec=spec, problem=problem, device=q.device, max_error=max_error,
                   inputs=("q", "k", "v"), fallback=FALLBACK, like_first=True)


ops.define("attention(Tensor q, Tensor k, Tensor v, bool causal=False, float? max_error=None) -> Tensor",
           _attention, _fake)
