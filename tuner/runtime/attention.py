"""``tuner.runtime.attention``: the tuned attention kernel, a drop-in for causal or full SDPA.

``attention(q, k, v, causal)`` computes ``softmax(q·kᵀ/√D [+ causal mask])·v`` for q [B, H, S, D]
and k, v [B, H_kv, S, D] (H_kv = H, or fewer heads dividing H: grouped-query attention): on a GPU
(fp16, bf16) by the CUDA templates, on the CPU (float32) by the C one; ``out=`` writes into a
tensor of the caller's. Calls the templates do not cover (other ranks, lengths or dtypes,
cross-attention, inputs that need gradients) and shapes with no stored config within the bound run
PyTorch's ``scaled_dot_product_attention`` instead (``enable_gqa`` where H_kv < H).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from tuner.errors import UsageError
from tuner.kernel_templates import SpecError, kernel_spec

from . import ops
from .answers import NoAnswer
from .devices import arch_of
from .runtime import Request, Tuned, current

FALLBACK = "torch.nn.functional.scaled_dot_product_attention"
_DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16"}


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, *,
              max_error: float | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of q [B, H, S, D] over k and v [B, H_kv, S, D] (H_kv dividing H: grouped-query
    attention, each group of H / H_kv query heads reading one k/v head) by the stored best config
    within ``max_error`` (relative L2; None: any config that passed the template's own bound when
    tuned). ``out``: a contiguous tensor like ``q`` to write into (no allocation), returned."""
    if ops.needs_grad(q, k, v):
        return ops.into(out, _sdpa(q, k, v, causal))
    if ops.eager(q):  # a plain call: the implementation itself, no dispatcher
        return _attention(q, k, v, causal, max_error, out)
    if out is None:
        return torch.ops.tuner.attention(q, k, v, causal, max_error)
    torch.ops.tuner.attention_out(q, k, v, out, causal, max_error)
    return out


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
               max_error: float | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    runtime = current()
    key = ("attention", q.shape, k.shape, v.shape, q.dtype, k.dtype, v.dtype, q.get_device(), k.get_device(),
           v.get_device(), causal, max_error)  # get_device(): -1 on the CPU, the GPU's index
    plan = runtime.plans.get(key)
    if plan is None:
        plan = runtime.plan(key, lambda: _request(q, k, v, causal, max_error), kernel="attention",
                            fallback=FALLBACK)
    if isinstance(plan, Tuned):
        return plan((q, k, v), out)
    runtime.missing(key, plan)
    return ops.into(out, _sdpa(q, k, v, causal))


def _attention_into(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, causal: bool = False,
                    max_error: float | None = None) -> None:
    _attention(q, k, v, causal, max_error, out)


def _fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
          max_error: float | None = None) -> torch.Tensor:
    return q.new_empty(q.shape)


def _grouped(q: torch.Size, kv: torch.Size) -> bool:
    """Whether k/v of shape ``kv`` serve q of shape ``q``: the same B, S and D, and H_kv dividing H."""
    (batch, heads, length, dim), (kv_batch, kv_heads, kv_length, kv_dim) = q, kv
    return (kv_batch, kv_length, kv_dim) == (batch, length, dim) and heads % kv_heads == 0


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    # Contiguous like the tuned kernel's output, so the fake implementation holds for both.
    grouped = k.dim() == q.dim() == 4 and k.shape[1] != q.shape[1]
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=grouped).contiguous()


def _request(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
             max_error: float | None) -> Request:
    try:
        spec = kernel_spec("attention", arch_of(q.device))  # renders any family's stored config
    except (SpecError, UsageError) as exc:  # no template for this device, or an unknown GPU
        raise NoAnswer(str(exc)) from None
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape or not _grouped(q.shape, k.shape):
        raise NoAnswer(f"the tuned kernels take q [B, H, S, D] and k, v [B, H_kv, S, D] with H_kv dividing H "
                       f"(got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)})")
    if not (q.dtype == k.dtype == v.dtype and q.device == k.device == v.device):
        raise NoAnswer("q, k and v differ in dtype or device")
    batch, heads, length, dim = q.shape
    problem: dict[str, Any] = {"B": batch, "H": heads, "S": length, "D": dim, "causal": bool(causal)}
    if k.shape[1] != heads:
        problem["H_kv"] = k.shape[1]
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
ops.define_into("attention_out(Tensor q, Tensor k, Tensor v, Tensor(a!) out, bool causal=False, "
                "float? max_error=None) -> ()", _attention_into)
