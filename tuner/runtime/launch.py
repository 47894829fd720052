"""Launching a compiled kernel: the one seam between a plan and the hardware.

:func:`load` gives, for one binary and one rendered :class:`Source`, a :data:`Launch`: called
with the buffers (tensors: the inputs, then the output) and a stream, it enqueues one launch and
returns: no host synchronization, no allocation. It takes tensors rather than addresses so that
a kernel that wants more than a pointer of a buffer (a TMA tensor map of its shape and strides)
gets it.

CUDA kernels launch through the project's one CUDA launcher, :class:`tuner.workers.cuda_launch.Kernel`
(the driver's ``cuLaunchKernelEx``: tensor maps, clusters, persistent grids; argument blocks
packed once per set of buffer addresses), on the stream given, which the runtime takes from
torch's current stream, so launches order with torch's work, follow ``torch.cuda.stream(...)``
and are captured into CUDA graphs. That module imports no compiler. C kernels (the CPU backend)
are called through ctypes, which releases the GIL.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from tuner.kernel_templates.spec import Source

_CTYPES: dict[str, Any] = {"int32": ctypes.c_int32, "int64": ctypes.c_int64, "float32": ctypes.c_float,
                           "float64": ctypes.c_double}

#: Enqueues one launch on the buffers (inputs, then the output) on a stream (a raw
#: ``cudaStream_t``; 0 on the CPU); thread-safe. A launch the driver refuses raises
#: ``tuner.workers.cuda_launch.CudaDriverError``.
Launch = Callable[[Sequence[torch.Tensor], int], None]


class LaunchError(RuntimeError):
    """A kernel could not be loaded (the driver refused its module, or its launch cannot take the
    buffers); the message names the cause. The runtime then runs the call's fallback."""


def load(backend: str, path: Path, source: Source, names: Sequence[str], device_index: int) -> Launch:
    """The launch of ``source`` from the binary at ``path``, on buffers named ``names`` (the
    inputs' names in the template's ``make_inputs``, then ``out``)."""
    if backend == "cuda":
        from tuner.workers.cuda_launch import CudaDriverError, Kernel

        try:
            return Kernel(path, source, names, device_index).launch
        except (CudaDriverError, ValueError) as exc:
            raise LaunchError(f"cannot load {source.entry} from {path}: {exc}") from None
    return CpuLauncher(path, source, len(names))


class CpuLauncher:
    """A C kernel from a shared object, called as ``entry(*buffers, *scalars)``."""

    def __init__(self, path: Path, source: Source, buffers: int):
        try:
            function = getattr(ctypes.CDLL(str(path)), source.entry)
        except (OSError, AttributeError) as exc:
            raise LaunchError(f"cannot load {source.entry} from {path}: {exc}") from None
        function.restype = None
        function.argtypes = [ctypes.c_void_p] * buffers + [_CTYPES[k] for k, _ in source.scalars]
        self._function = function
        self._scalars = tuple(value for _, value in source.scalars)

    def __call__(self, buffers: Sequence[torch.Tensor], stream: int) -> None:
        self._function(*[buffer.data_ptr() for buffer in buffers], *self._scalars)


def cuda_limits(device_index: int) -> dict[str, int]:
    """A GPU's limits as templates' ``check`` reads them, from the driver."""
    from tuner.workers.cuda_launch import device_limits

    return device_limits(device_index)
