"""Compiling CUDA sources to cubins with nvcc, cached on disk, with ptxas's resource report.

One compile path everywhere: nvcc runs on GPU-less CI machines exactly as on the measuring
hosts, so CI checks the binaries production runs. The cache key covers the source digest (code,
entry, options), the arch and nvcc's own version line, as Triton's cache key does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from tuner.kernel_templates.spec import Source

from .cache import cache_key, cached_path, store_atomically
from .measurement import Artifact, tail

COMPILE_TIMEOUT_S = 300

_REGISTERS = re.compile(r"Used (\d+) registers")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_STATIC_SMEM = re.compile(r"(\d+) bytes smem")


class ToolchainMissing(Exception):
    """nvcc is not installed where this worker runs; the message says how to point at it."""


@lru_cache(maxsize=1)
def nvcc_path() -> str:
    candidates = [shutil.which("nvcc")]
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            candidates.append(os.path.join(root, "bin", "nvcc"))
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise ToolchainMissing("nvcc not found: install the CUDA toolkit (12.4 or newer) or set CUDA_HOME")


@lru_cache(maxsize=1)
def nvcc_version() -> str:
    """nvcc's last version line, e.g. ``Build cuda_13.0.r13.0/compiler.36424714_0``."""
    out = subprocess.run([nvcc_path(), "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def gencode(arch: str) -> str:
    # The -gencode form: `-arch=sm_90a` also runs a plain sm_90 pass (see HOPPER.md).
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
    started = time.perf_counter()
    digest = source.digest()
    try:
        key = cache_key(source.code_digest(), arch, nvcc_version())
    except (ToolchainMissing, OSError, subprocess.SubprocessError) as exc:
        return Artifact(digest, None, 0.0, cached=False, error=str(exc))
    cubin, meta = cached_path(key, ".cubin"), cached_path(key, ".json")
    if cubin.is_file() and meta.is_file():
        saved = json.loads(meta.read_text())
        return Artifact(digest, str(cubin), time.perf_counter() - started, cached=True,
                        resources=saved["resources"], log=saved["log"])
    resources, log, error = _run_nvcc(source, arch, cubin)
    if error is None:
        store_atomically(json.dumps({"resources": resources, "log": log}).encode(), meta)
    return Artifact(digest, str(cubin) if error is None else None, time.perf_counter() - started,
                    cached=False, resources=resources, log=log, error=error)


def _run_nvcc(source: Source, arch: str, destination: Path) -> tuple[dict[str, Any], str, str | None]:
    """(resources, log, error) of one nvcc run; the cubin lands at ``destination`` on success."""
    with tempfile.TemporaryDirectory(prefix="tuner-nvcc-") as work:
        src, out = Path(work, "kernel.cu"), Path(work, "kernel.cubin")
        src.write_text(source.code)
        command = [nvcc_path(), "-cubin", gencode(arch), "--resource-usage", *source.options,
                   "-o", str(out), str(src)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            return {}, "", f"nvcc ran over {COMPILE_TIMEOUT_S} s"
        log = tail(done.stdout + done.stderr)
        if done.returncode != 0 or not out.is_file():
            return {}, log, f"nvcc exited with status {done.returncode}"
        store_atomically(out.read_bytes(), destination)
        return parse_resources(done.stdout + done.stderr), log, None
