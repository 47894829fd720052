"""The GPU side of the CUDA backend: device facts, loading cubins and launching them (CuPy).

CuPy, torch and pynvml are imported only when a GPU is used, so compiling (and CI) needs none
of them. Kernels launch on the legacy default stream, which torch also uses unless told
otherwise, so torch's events and allocations order correctly around them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from tuner.kernel_templates.spec import Source
from tuner.kernel_templates.target import Target

from .cuda_compile import compiler

_SCALAR_TYPES = {"int32": np.int32, "int64": np.int64, "float32": np.float32, "float64": np.float64}

_DEFAULT_DYNAMIC_SHARED = 48 * 1024


@lru_cache(maxsize=1)
def gpu_count() -> int:
    try:
        import cupy
    except ImportError:
        return 0
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:  # no driver or no device: no GPU here
        return 0


def device_for(target: Target) -> Target:
    """``target`` as this machine's GPU has it when there is one, else with its documented limits."""
    if not gpu_count():
        return target
    import cupy

    attributes = cupy.cuda.Device(0).attributes
    return target.with_device(cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), {
        "max_shared_bytes": attributes["MaxSharedMemoryPerBlockOptin"],
        "max_shared_bytes_per_sm": attributes["MaxSharedMemoryPerMultiprocessor"],
        "max_threads_per_block": attributes["MaxThreadsPerBlock"],
        "sm_count": attributes["MultiProcessorCount"]})


@lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    env: dict[str, Any] = {"host": platform.node(), "compiler": compiler().label}
    if gpu_count():
        import cupy
        import torch

        props = cupy.cuda.runtime.getDeviceProperties(0)
        env.update(device=props["name"].decode(), capability=f"{props['major']}.{props['minor']}",
                   driver=cupy.cuda.runtime.driverGetVersion(), cupy=cupy.__version__,
                   torch=torch.__version__, sm_count=props["multiProcessorCount"])
    return env


def sm_clock_mhz() -> float | None:
    """The SM clock now, from NVML; ``None`` where NVML is missing."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return float(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
    except pynvml.NVMLError:  # NVML refused: the clock is optional context
        return None


@lru_cache(maxsize=64)
def _function(cubin: str, entry: str, shared_bytes: int):
    import cupy

    function = cupy.RawModule(path=cubin).get_function(entry)
    if shared_bytes > _DEFAULT_DYNAMIC_SHARED:  # beyond 48 KB a kernel must opt in
        function.max_dynamic_shared_size_bytes = shared_bytes
    return function


def launcher(cubin: str, source: Source, buffers: Sequence[Any]) -> Callable[[], None]:
    """A function launching the kernel on ``buffers`` (torch tensors: the inputs, then the output).

    The arguments are packed once, so a timed launch costs the host little. Refresh inputs in
    place (``copy_``) to keep them. Raises CuPy's driver errors for a module that does not load
    or a launch that fails.
    """
    import cupy

    function = _function(cubin, source.entry, source.shared_bytes)
    # Viewed as int16, fp16 and bf16 tensors alike cross into CuPy (which has no bf16) as pointers.
    arrays = tuple(cupy.asarray(buffer.view(_same_size_int(buffer))) for buffer in buffers)
    args = arrays + tuple(_SCALAR_TYPES[kind](value) for kind, value in source.scalars)

    def launch() -> None:
        function(source.grid, source.block, args, shared_mem=source.shared_bytes)

    return launch


def _same_size_int(tensor: Any) -> Any:
    import torch

    return {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]
