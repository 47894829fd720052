"""The machine code of a cubin (``cuobjdump --dump-sass``): which instructions ptxas emitted.

cuobjdump is found on PATH, under CUDA_HOME, or in the ``nvidia-cuda-cuobjdump`` wheel (with
``nvidia-cuda-nvdisasm`` beside it), so GPU-less CI machines can read SASS too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path


class DisassemblerMissing(Exception):
    """No cuobjdump here; the message says how to get one."""


@lru_cache(maxsize=1)
def cuobjdump_path() -> str:
    candidates = [shutil.which("cuobjdump")]
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            candidates.append(os.path.join(root, "bin", "cuobjdump"))
    try:
        import nvidia.cu13

        candidates += [str(Path(p, "bin", "cuobjdump")) for p in nvidia.cu13.__path__]
    except ImportError:
        pass
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise DisassemblerMissing("cuobjdump not found: install the CUDA toolkit or `pip install "
                              "nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`")


def dump_sass(cubin: str) -> str:
    """The SASS listing of ``cubin``; cuobjdump runs nvdisasm from its own folder."""
    tool = cuobjdump_path()
    env = {**os.environ, "PATH": os.path.dirname(tool) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run([tool, "--dump-sass", cubin], capture_output=True, text=True, check=True,
                          env=env).stdout


def count(sass: str, mnemonic: str) -> int:
    """How many instructions of ``sass`` (predicated or not) start with ``mnemonic`` (``HGMMA``, ``LDL``)."""
    found = 0
    for line in sass.splitlines():
        words = line.split("*/", 1)[-1].split()
        if words and words[0].startswith("@"):
            words = words[1:]
        found += bool(words) and words[0].startswith(mnemonic)
    return found
