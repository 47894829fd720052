"""What the runtime needs to know about the device a call's tensors live on."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from functools import cache, partial

import torch

from tuner.arch import arch_of_capability
from tuner.kernel_templates import Target


def backend_of(device: torch.device) -> str | None:
    """The tuner backend of a torch device ("cuda" or "cpu"), or None where there is none."""
    return device.type if device.type in ("cuda", "cpu") else None


@cache
def arch_of(device: torch.device) -> str:
    """The arch a device's kernels are tuned for: ``cpu``, or the GPU's as `--arch auto` picks it.
    UsageError for a GPU with no built-in target."""
    if device.type == "cpu":
        return "cpu"
    major, minor = torch.cuda.get_device_capability(device)
    return arch_of_capability(f"{major}.{minor}")


@cache
def target_of(device: torch.device) -> Target:
    """The target of a device as it has it (its name and limits), which templates' ``check``
    sees and backends compile for."""
    if device.type == "cpu":
        return Target.documented("cpu").with_device(platform.processor(), {"cores": os.cpu_count() or 1})
    from .launch import cuda_limits

    index = device.index or 0
    return Target.documented(arch_of(device)).with_device(torch.cuda.get_device_name(index),
                                                          cuda_limits(index))


def stream_of(device: torch.device) -> Callable[[], int]:
    """A function returning the raw handle of torch's current stream on ``device`` (0 on the CPU).

    Read at every launch: the current stream changes under ``torch.cuda.stream`` and during CUDA
    graph capture."""
    if device.type != "cuda":
        return lambda: 0
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # what Triton's launcher calls
    if raw is not None:
        return partial(raw, device.index)
    return lambda: torch.cuda.current_stream(device).cuda_stream
