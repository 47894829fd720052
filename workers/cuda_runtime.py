"""The GPU side of the CUDA backend: device facts and the environment fingerprint (CuPy, NVML).

CuPy, torch and pynvml are imported only when a GPU is used, so compiling (and CI) needs none
of them. Loading and launching kernels is cuda_launch's job.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from typing import Any

from tuner.kernel_templates.target import Target

from .cuda_compile import compiler


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
