"""Launching a compiled kernel: the one seam between a plan and the hardware.

A :class:`Launcher` is bound to one binary and one rendered :class:`Source` (entry, launch
geometry, shared memory, scalars). Called with the buffers (contiguous tensors: the inputs, then
the output) and a stream, it enqueues one launch and returns: no host synchronization, no
allocation. It takes tensors rather than addresses so that a launcher whose kernel wants more
than a pointer of a buffer (a TMA tensor map of its shape and strides) has what it needs.

CUDA kernels launch through the driver API (cuda-bindings' ``cuLaunchKernel``) on the stream
given, which the runtime takes from torch's current stream, so launches order with torch's work,
follow ``torch.cuda.stream(...)`` and are captured into CUDA graphs. The argument block is packed
once; a launch writes the addresses into it and hands the driver its address (the driver copies
the arguments at launch), under a lock so threads can share a launcher. C kernels (the CPU
backend) are called through ctypes, which releases the GIL.
"""

from __future__ import annotations

import ctypes
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch

from tuner.kernel_templates.spec import Source

_CTYPES: dict[str, Any] = {"int32": ctypes.c_int32, "int64": ctypes.c_int64, "float32": ctypes.c_float,
           "float64": ctypes.c_double}
_DEFAULT_DYNAMIC_SHARED = 48 * 1024  # beyond this a kernel must opt in
_current_device = getattr(torch._C, "_cuda_getDevice", torch.cuda.current_device)


class LaunchError(RuntimeError):
    """The driver refused to load or launch a kernel; the message names the driver's error."""


class Launcher(ABC):
    """One loaded kernel with its launch packed; thread-safe."""

    @abstractmethod
    def __call__(self, buffers: Sequence[torch.Tensor], stream: int) -> None:
        """Enqueues one launch on ``buffers`` on ``stream`` (a raw ``cudaStream_t``; 0 on the
        CPU). The buffers must stay alive until the launch is enqueued."""


def load(backend: str, path: Path, source: Source, buffers: int, device_index: int) -> Launcher:
    """The launcher of ``source`` from the binary at ``path``, taking ``buffers`` addresses."""
    if backend == "cuda":
        return CudaLauncher(path, source, buffers, device_index)
    return CpuLauncher(path, source, buffers)


class CudaLauncher(Launcher):
    """A kernel of a cubin in the primary context of one GPU (the one torch uses). Plans of one
    binary on one GPU share its loaded module; each has its own packed arguments."""

    def __init__(self, cubin: Path, source: Source, buffers: int, device_index: int):
        from cuda.bindings import driver

        self._driver = driver
        self._success = driver.CUresult.CUDA_SUCCESS
        self._context = _primary_context(device_index)
        self._device_index = device_index
        self._bound = threading.local()  # whether this thread has our context current
        _check(driver, driver.cuCtxPushCurrent(self._context), "cuCtxPushCurrent")
        try:
            self._function = _function(str(cubin), source.entry, source.shared_bytes, device_index)
        finally:
            driver.cuCtxPopCurrent()
        self._geometry = (*source.grid, *source.block, source.shared_bytes)
        self._slots: Any = (ctypes.c_void_p * buffers)()
        self._scalars = [_CTYPES[kind](value) for kind, value in source.scalars]
        addresses = [ctypes.addressof(self._slots) + i * ctypes.sizeof(ctypes.c_void_p)
                     for i in range(buffers)] + [ctypes.addressof(s) for s in self._scalars]
        self._argv = (ctypes.c_void_p * len(addresses))(*addresses)
        self._argv_address = ctypes.addressof(self._argv)
        self._lock = threading.Lock()

    def __call__(self, buffers: Sequence[torch.Tensor], stream: int) -> None:
        pointers = [buffer.data_ptr() for buffer in buffers]
        foreign = _current_device() != self._device_index
        if foreign:  # torch works on another GPU in this thread: launch in ours, then give it back
            self._driver.cuCtxPushCurrent(self._context)
        elif not getattr(self._bound, "yes", False):  # a thread torch has not bound yet
            self._bind()
        try:
            with self._lock:
                self._slots[:] = pointers
                result = self._driver.cuLaunchKernel(self._function, *self._geometry, stream,
                                                     self._argv_address, 0)
        finally:
            if foreign:
                self._driver.cuCtxPopCurrent()
        if result[0] != self._success:
            _check(self._driver, result, "cuLaunchKernel")

    def _bind(self) -> None:
        _check(self._driver, self._driver.cuCtxSetCurrent(self._context), "cuCtxSetCurrent")
        self._bound.yes = True


class CpuLauncher(Launcher):
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


@cache
def _primary_context(device_index: int) -> Any:
    from cuda.bindings import driver

    _check(driver, driver.cuInit(0), "cuInit")
    device = _check(driver, driver.cuDeviceGet(device_index), "cuDeviceGet")
    return _check(driver, driver.cuDevicePrimaryCtxRetain(device), "cuDevicePrimaryCtxRetain")


@cache
def _function(cubin: str, entry: str, shared_bytes: int, device_index: int) -> Any:
    """The kernel ``entry`` of a cubin file loaded once into the GPU's primary context (pushed
    current by the caller); its module stays loaded for the process."""
    from cuda.bindings import driver

    module = _check(driver, driver.cuModuleLoadData(Path(cubin).read_bytes()), "cuModuleLoadData")
    function = _check(driver, driver.cuModuleGetFunction(module, entry.encode()),
                      f"cuModuleGetFunction({entry})")
    if shared_bytes > _DEFAULT_DYNAMIC_SHARED:
        attribute = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        _check(driver, driver.cuFuncSetAttribute(function, attribute, shared_bytes),
               "cuFuncSetAttribute")
    return function


def cuda_limits(device_index: int) -> dict[str, int]:
    """A GPU's limits as templates' ``check`` reads them, from the driver."""
    from cuda.bindings import driver

    _check(driver, driver.cuInit(0), "cuInit")
    device = _check(driver, driver.cuDeviceGet(device_index), "cuDeviceGet")
    names = {"max_shared_bytes": "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN",
             "max_shared_bytes_per_sm": "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR",
             "max_threads_per_block": "MAX_THREADS_PER_BLOCK", "sm_count": "MULTIPROCESSOR_COUNT"}
    return {key: _check(driver, driver.cuDeviceGetAttribute(
                getattr(driver.CUdevice_attribute, f"CU_DEVICE_ATTRIBUTE_{name}"), device), name)
            for key, name in names.items()}


def _check(driver: Any, result: tuple, what: str) -> Any:
    """The value of a cuda-bindings call's ``(error, value...)`` result, or LaunchError."""
    error = result[0]
    if error != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(error)
        raise LaunchError(f"{what} failed: {name.decode() if name else error}")
    return result[1] if len(result) > 1 else None
