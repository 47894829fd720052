"""The ``tuner`` namespace of torch custom operators, and when a call may skip the dispatcher.

Each kernel is an operator (``torch.ops.tuner.<name>``) with CPU and CUDA implementations and a
fake one (shapes and dtypes only), so ``torch.compile`` traces it as one opaque node and CUDA
graphs capture its launch. A plain eager call goes straight to the implementation: the
dispatcher adds microseconds that a small kernel would feel, and does nothing for a plain tensor
outside tracing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

LIBRARY = torch.library.Library("tuner", "DEF")
_len_dispatch_stack = getattr(torch._C, "_len_torch_dispatch_stack", lambda: 0)


def define(schema: str, implementation: Callable, fake: Callable) -> None:
    """Defines ``tuner::<schema>`` with ``implementation`` on CPU and CUDA and ``fake`` for
    tracing (meta tensors, FakeTensor, torch.compile)."""
    name = schema.split("(", 1)[0]
    LIBRARY.define(schema)
    for key in ("CPU", "CUDA"):
        LIBRARY.impl(name, implementation, key)
    torch.library.register_fake(f"tuner::{name}", fake, lib=LIBRARY)


def define_into(schema: str, implementation: Callable) -> None:
    """Defines ``tuner::<schema>``, an out= variant that writes its ``Tensor(a!) out`` argument and
    returns nothing (what torch.compile functionalizes), with ``implementation`` on CPU and CUDA;
    its fake implementation does nothing."""
    define(schema, implementation, _writes_nothing)


def _writes_nothing(*args: object) -> None:
    return None


class WrongOut(ValueError):
    """An out= tensor the kernel cannot write: another shape, dtype or device, or strided."""


def into(out: torch.Tensor | None, result: torch.Tensor) -> torch.Tensor:
    """``result``, or ``out`` with ``result`` copied into it (the fallback of an out= call); WrongOut
    for an ``out`` the tuned kernel could not write either (copy_ would broadcast into another shape)."""
    if out is None:
        return result
    if (out.shape != result.shape or out.dtype != result.dtype or out.get_device() != result.get_device()
            or not out.is_contiguous()):
        raise WrongOut(wrong_out(out, tuple(result.shape), result.dtype))
    return out.copy_(result)


def wrong_out(out: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> str:
    return (f"out= must be a contiguous {tuple(shape)} {str(dtype).removeprefix('torch.')} tensor on the "
            f"inputs' device (got {tuple(out.shape)} {str(out.dtype).removeprefix('torch.')} on {out.device}"
            f"{'' if out.is_contiguous() else ', strided'})")


def eager(tensor: torch.Tensor) -> bool:
    """Whether a call on ``tensor`` may run the implementation directly: a plain CPU or CUDA
    tensor, not under torch.compile, no dispatch mode (FakeTensorMode, make_fx) active."""
    return (type(tensor) is torch.Tensor and (tensor.is_cuda or tensor.is_cpu)
            and not torch.compiler.is_compiling() and not _len_dispatch_stack())


def needs_grad(*tensors: torch.Tensor) -> bool:
    """The tuned kernels compute forward only: a call that autograd must see goes to PyTorch."""
    if not torch.is_grad_enabled():
        return False
    for tensor in tensors:
        if tensor.requires_grad:
            return True
    return False
