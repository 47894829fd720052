"""Target architectures: the names the tuner accepts, what this machine has, and the one place
an ``--arch`` text becomes a :class:`Target`."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache

from tuner.kernel_templates.target import ARCHS, Target

from .errors import UsageError

KNOWN_ARCHS = tuple(ARCHS)
CUDA_ARCHS = tuple(arch for arch, info in ARCHS.items() if info.backend == "cuda")

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


def arch_of_capability(capability: str) -> str:
    """The arch tuned for a GPU of this compute capability ("9.0" -> "sm_90a"), as `--arch auto`
    picks it; UsageError for a capability with no built-in target."""
    if capability not in _AUTO_ARCH:
        raise UsageError(f"this GPU (compute capability {capability}) has no built-in target; "
                         f"pass --arch with one of {', '.join(CUDA_ARCHS)}")
    return _AUTO_ARCH[capability]


def resolve_target(requested: str, *, remote_cluster: bool) -> Target:
    """The target to tune for: ``auto`` becomes the local GPU's arch or ``cpu``.

    A CUDA arch is checked against the local GPU, unless the measuring workers live on a
    Ray cluster elsewhere (then the measuring actor checks it where the GPU is). The target
    carries the arch's documented limits; the measuring process puts its device's in.
    """
    if requested == "auto":
        capability = local_gpu_capability()
        if capability is None:
            return Target.documented("cpu")
        return Target.documented(arch_of_capability(capability))
    if requested not in KNOWN_ARCHS:
        raise UsageError(f"unknown arch {requested!r}: use auto or one of {', '.join(KNOWN_ARCHS)}")
    target = Target.documented(requested)
    if target.backend == "cuda" and not remote_cluster:
        check_local_gpu(target)
    return target


def check_local_gpu(target: Target) -> None:
    capability = local_gpu_capability()
    if capability is None:
        raise UsageError(f"--arch {target.arch} needs a CUDA GPU and this machine has none: use --arch cpu "
                         "(or auto), --ray-address to measure on a cluster with GPUs, or "
                         f"`tuner check --arch {target.arch}` to compile a template without one")
    if capability != target.capability_text:
        raise UsageError(f"--arch {target.arch} does not match this machine's GPU (compute capability "
                         f"{capability}): use --arch auto")
