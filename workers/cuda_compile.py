"""Compiling CUDA sources to cubins, cached on disk, with ptxas's resource report.

Two compilers, one contract: NVRTC (``workers.nvrtc``, in this process, the default where it is
installed) and nvcc (a subprocess: the fallback, and the choice with ``TUNER_CUDA_COMPILER=nvcc``).
Neither needs a GPU, so GPU-less CI machines compile exactly what the measuring hosts run. The
cache key covers the source digest (code, entry, options), the arch and the compiler's name and
version, as Triton's cache key does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tuner.kernel_templates.spec import Source

from . import nvrtc
from .cache import cache_key, cached_path, store_atomically
from .measurement import Artifact, error_line, tail

COMPILE_TIMEOUT_S = 300
COMPILER_ENV = "TUNER_CUDA_COMPILER"  # nvrtc, nvcc or auto (NVRTC where installed, else nvcc)

_REGISTERS = re.compile(r"Used (\d+) registers")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_STATIC_SMEM = re.compile(r"(\d+) bytes smem")


class ToolchainMissing(Exception):
    """No CUDA compiler where this worker runs; the message says what to install or point at."""


@dataclass(frozen=True)
class Build:
    """What one compiler run left: resources, log and, on failure, the error (the cubin is on disk)."""

    resources: dict[str, Any]
    log: str
    error: str | None


@dataclass(frozen=True)
class Compiler:
    """A CUDA compiler: its name and version (part of the cache key) and how it builds a cubin."""

    name: str
    version: str
    build: Callable[[Source, str, Path], Build]

    @property
    def label(self) -> str:
        """What the environment fingerprint records, e.g. ``nvrtc 13.5``."""
        return f"{self.name} {self.version}"


def compiler() -> Compiler:
    """The compiler ``TUNER_CUDA_COMPILER`` names: NVRTC by default, nvcc where NVRTC is absent."""
    choice = os.environ.get(COMPILER_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "nvrtc", "nvcc"):
        raise ToolchainMissing(f"{COMPILER_ENV}={choice!r} is not a CUDA compiler: use nvrtc, nvcc or auto")
    if choice == "nvcc" or (choice == "auto" and not nvrtc.available()):
        return Compiler("nvcc", nvcc_version(), _run_nvcc)
    try:
        return Compiler("nvrtc", nvrtc.version(), _run_nvrtc)
    except nvrtc.NvrtcMissing as exc:
        raise ToolchainMissing(str(exc)) from None


def cuda_tool(name: str, *folders: str) -> str | None:
    """The executable ``name`` of the CUDA toolkit: on PATH, under CUDA_HOME, CUDA_PATH or
    /usr/local/cuda, or in one of ``folders``; None where there is none."""
    candidates = [shutil.which(name)]
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            candidates.append(os.path.join(root, "bin", name))
    candidates += [os.path.join(folder, name) for folder in folders]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


@lru_cache(maxsize=1)
def nvcc_path() -> str:
    if path := cuda_tool("nvcc"):
        return path
    raise ToolchainMissing("nvcc not found: install the CUDA toolkit (12.4 or newer) or set CUDA_HOME")


@lru_cache(maxsize=1)
def nvcc_version() -> str:
    """nvcc's last version line, e.g. ``Build cuda_13.0.r13.0/compiler.36424714_0``."""
    out = subprocess.run([nvcc_path(), "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def gencode(arch: str) -> str:
    # The -gencode form names exactly one real target; the shorthand `-arch=sm_XX` also asks
    # for the PTX of compute_XX (nvcc: `-arch=sm_XX` is `-arch=compute_XX -code=sm_XX,compute_XX`).
    number = arch.removeprefix("sm_")
    return f"-gencode=arch=compute_{number},code=sm_{number}"


def parse_resources(report: str) -> dict[str, int]:
    """Registers, stack frame, spill and static shared bytes from ``--resource-usage`` output."""
    resources: dict[str, int] = {}
    if match := _REGISTERS.search(report):
        resources["registers"] = int(match.group(1))
    if match := _STACK.search(report):
        stack, stores, loads = map(int, match.groups())
        resources.update(stack_bytes=stack, spill_store_bytes=stores, spill_load_bytes=loads)
    match = _STATIC_SMEM.search(report)
    resources["static_shared_bytes"] = int(match.group(1)) if match else 0
    return resources


def compile_cubin(source: Source, arch: str) -> Artifact:
    """The cubin of ``source`` for ``arch``, from the cache when it was built before."""
    digest = source.digest()
    try:
        chosen = compiler()
    except (ToolchainMissing, OSError, subprocess.SubprocessError) as exc:
        return Artifact(digest, None, 0.0, cached=False, error=str(exc))
    started = time.perf_counter()  # after the compiler's one-time loading: this variant's seconds
    key = cache_key(source.code_digest(), arch, chosen.name, chosen.version, *nvrtc_headers(chosen))
    cubin, meta = cached_path(key, ".cubin"), cached_path(key, ".json")
    if cubin.is_file() and meta.is_file():
        saved = json.loads(meta.read_text())  # the compile's own seconds: what the variant cost
        return Artifact(digest, str(cubin), saved["compile_s"], cached=True, resources=saved["resources"],
                        log=saved["log"])
    built = chosen.build(source, arch, cubin)
    seconds = time.perf_counter() - started
    if built.error is None:
        store_atomically(json.dumps({"resources": built.resources, "log": built.log, "compile_s": seconds}).encode(),
                         meta)
    return Artifact(digest, str(cubin) if built.error is None else None, seconds, cached=False,
                    resources=built.resources, log=built.log, error=built.error)


def nvrtc_headers(chosen: Compiler) -> tuple[str, ...]:
    """The header folders NVRTC compiles against: which toolkit's headers is part of the key."""
    return nvrtc.include_dirs() if chosen.name == "nvrtc" else ()


def _run_nvrtc(source: Source, arch: str, destination: Path) -> Build:
    """One NVRTC compile; the cubin lands at ``destination`` on success."""
    try:
        out = nvrtc.compile_cubin(source.code, arch, source.options)
    except RuntimeError as exc:  # NVRTC refused the call itself (out of memory, a bad argument)
        return Build({}, "", str(exc))
    log = tail(out.log)
    if out.cubin is None:
        return Build({}, log, error_line(log, out.error or "NVRTC failed"))
    store_atomically(out.cubin, destination)
    return Build(parse_resources(out.log), log, None)


def _run_nvcc(source: Source, arch: str, destination: Path) -> Build:
    """One nvcc run; the cubin lands at ``destination`` on success."""
    with tempfile.TemporaryDirectory(prefix="tuner-nvcc-") as work:
        src, out = Path(work, "kernel.cu"), Path(work, "kernel.cubin")
        src.write_text(source.code)
        command = [nvcc_path(), "-cubin", gencode(arch), "--resource-usage", *source.options,
                   "-o", str(out), str(src)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            return Build({}, "", f"nvcc ran over {COMPILE_TIMEOUT_S} s")
        log = tail(done.stdout + done.stderr)
        if done.returncode != 0 or not out.is_file():
            return Build({}, log, error_line(log, f"nvcc exited with status {done.returncode}"))
        store_atomically(out.read_bytes(), destination)
        return Build(parse_resources(done.stdout + done.stderr), log, None)
