"""Target architectures: the names the tuner accepts and what this machine has."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache

from .errors import UsageError

CUDA_ARCHS = ("sm_80", "sm_86", "sm_89", "sm_90", "sm_90a")
KNOWN_ARCHS = ("cpu",) + CUDA_ARCHS

# compute capability -> the arch `--arch auto` picks (Hopper gets its arch-specific target)
_AUTO_ARCH = {"8.0": "sm_80", "8.6": "sm_86", "8.9": "sm_89", "9.0": "sm_90a"}


@lru_cache(maxsize=1)
def local_gpu_capability() -> str | None:
    """Compute capability of this machine's first GPU ("9.0"), or None when there is none."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return lines[0] if lines else None


def capability_of(arch: str) -> str:
    digits = arch.removeprefix("sm_").rstrip("a")
    return f"{digits[:-1]}.{digits[-1]}"


def resolve_arch(requested: str, *, remote_cluster: bool) -> str:
    """The arch to tune for: ``auto`` becomes the local GPU's arch or ``cpu``.

    A CUDA arch is checked against the local GPU, unless the measuring workers live on a
    Ray cluster elsewhere (then the measuring actor checks it where the GPU is).
    """
    if requested == "auto":
        capability = local_gpu_capability()
        if capability is None:
            return "cpu"
        if capability not in _AUTO_ARCH:
            raise UsageError(f"this GPU (compute capability {capability}) has no built-in target; "
                             f"pass --arch with one of {', '.join(CUDA_ARCHS)}")
        return _AUTO_ARCH[capability]
    if requested not in KNOWN_ARCHS:
        raise UsageError(f"unknown arch {requested!r}: use auto or one of {', '.join(KNOWN_ARCHS)}")
    if requested != "cpu" and not remote_cluster:
        check_local_gpu(requested)
    return requested


def check_local_gpu(arch: str) -> None:
    capability = local_gpu_capability()
    if capability is None:
        raise UsageError(f"--arch {arch} needs a CUDA GPU and this machine has none: use --arch cpu "
                         "(or auto), or --ray-address to measure on a cluster with GPUs")
    if capability != capability_of(arch):
        raise UsageError(f"--arch {arch} does not match this machine's GPU (compute capability "
                         f"{capability}): use --arch auto")
