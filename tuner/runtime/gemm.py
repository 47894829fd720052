"""``tuner.runtime.gemm``: the tuned GEMM, a drop-in for ``a @ b`` of fp16/bf16 matrices on Hopper.

``gemm(a, b)`` computes ``a @ b`` for ``a`` [M, K] and ``b`` [K, N] by the CUDA template (wgmma,
TMA, clusters, persistent grids), in the layout of ``b``'s storage: rows of ``b`` (layout ``nn``)
or rows of ``b.T`` (layout ``nt``: a linear layer's weight ``w`` [N, K] as stored, so
``F.linear(x, w) == gemm(x, w.T)``). Rows need not be dense: TMA reads any row stride that is a
multiple of 16 bytes. Calls the template does not cover (other ranks, dtypes or devices, strides
TMA cannot read, inputs that need gradients) and shapes with no stored config within the bound
run ``torch.matmul`` instead.
"""

from __future__ import annotations

from typing import Any

import torch

from tuner.errors import UsageError
from tuner.kernel_templates import SpecError, find_spec

from . import ops
from .answers import NoAnswer
from .devices import arch_of
from .runtime import Request, Tuned, current

FALLBACK = "torch.matmul"
_DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16"}
_TMA_ALIGN = 16  # bytes: TMA reads rows whose stride (and address) is a multiple of this


def gemm(a: torch.Tensor, b: torch.Tensor, *, max_error: float | None = None,
         out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` of 2-D tensors by the stored best config within ``max_error`` (relative L2;
    None: any config that passed the template's own bound when tuned). ``out``: a contiguous
    [M, N] tensor of their dtype to write into (no allocation), returned."""
    if ops.needs_grad(a, b):
        return ops.into(out, torch.matmul(a, b))
    if ops.eager(a):  # a plain call: the implementation itself, no dispatcher
        return _gemm(a, b, max_error, out)
    if out is None:
        return torch.ops.tuner.gemm(a, b, max_error)
    torch.ops.tuner.gemm_out(a, b, out, max_error)
    return out


def layout(b: torch.Tensor) -> str | None:
    """How ``b`` [K, N] is stored: ``nn`` (rows of b contiguous), ``nt`` (rows of b.T), or None."""
    if b.stride(1) == 1:
        return "nn"
    return "nt" if b.stride(0) == 1 else None


def _gemm(a: torch.Tensor, b: torch.Tensor, max_error: float | None = None,
          out: torch.Tensor | None = None) -> torch.Tensor:
    runtime = current()
    key = ("gemm", a.shape, b.shape, a.stride(), b.stride(), a.dtype, b.dtype, a.get_device(), b.get_device(),
           max_error)  # get_device(): -1 on the CPU, the GPU's index
    plan = runtime.plans.get(key)
    if plan is None:
        plan = runtime.plan(key, lambda: _request(a, b, max_error), kernel="gemm", fallback=FALLBACK)
    if isinstance(plan, Tuned):
        try:
            return plan((a, b if b.stride(1) == 1 else b.T), out)  # the template's b: [K, N] or [N, K]
        except ops.WrongOut:
            raise
        except ValueError:  # a view at an address TMA cannot read (checked when first seen)
            pass
    else:
        runtime.missing(key, plan)
    return ops.into(out, torch.matmul(a, b))


def _gemm_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, max_error: float | None = None) -> None:
    _gemm(a, b, max_error, out)


def _fake(a: torch.Tensor, b: torch.Tensor, max_error: float | None = None) -> torch.Tensor:
    return a.new_empty((a.shape[0], b.shape[1]))


def _request(a: torch.Tensor, b: torch.Tensor, max_error: float | None) -> Request:
    try:
        spec = find_spec("gemm", arch_of(a.device))
    except (SpecError, UsageError) as exc:  # no template for this device, or an unknown GPU
        raise NoAnswer(str(exc)) from None
    try:
        problem = spec.validate_problem(problem_of(a, b))
    except ValueError as exc:
        raise NoAnswer(f"the {spec.backend} template does not cover this call: {exc}") from None
    return Request(spec=spec, problem=problem, device=a.device, max_error=max_error, inputs=("a", "b"),
                   fallback=FALLBACK, dense=False)


def problem_of(a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
    """The GEMM problem of ``a @ b``; NoAnswer says why the template cannot take these tensors."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise NoAnswer(f"the tuned GEMM takes a [M, K] and b [K, N] (got {tuple(a.shape)}, {tuple(b.shape)})")
    if a.dtype != b.dtype or a.device != b.device or a.dtype not in _DTYPES:
        raise NoAnswer(f"the tuned GEMM takes a and b of one dtype (fp16 or bf16) on one device (got "
                       f"{a.dtype} on {a.device}, {b.dtype} on {b.device})")
    stored = layout(b)
    rows = [a.stride(0), b.stride(0) if stored == "nn" else b.stride(1)]
    if a.stride(1) != 1 or stored is None or any(r * a.element_size() % _TMA_ALIGN for r in rows):
        raise NoAnswer(f"the tuned GEMM reads rows by TMA: a and b (or b.T) need contiguous rows whose "
                       f"stride is a multiple of {_TMA_ALIGN} bytes (got strides {a.stride()}, {b.stride()})")
    return {"M": a.shape[0], "N": b.shape[1], "K": a.shape[1], "dtype": _DTYPES[a.dtype], "layout": stored}


ops.define("gemm(Tensor a, Tensor b, float? max_error=None) -> Tensor", _gemm, _fake)
ops.define_into("gemm_out(Tensor a, Tensor b, Tensor(a!) out, float? max_error=None) -> ()", _gemm_into)
