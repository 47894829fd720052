"""The machine code of a cubin (``cuobjdump --dump-sass``): which instructions ptxas emitted.

cuobjdump is found on PATH, under CUDA_HOME, or in the ``nvidia-cuda-cuobjdump`` wheel (with
``nvidia-cuda-nvdisasm`` beside it), so GPU-less CI machines can read SASS too.
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

from .cuda_compile import cuda_tool


class DisassemblerMissing(Exception):
    """No cuobjdump here; the message says how to get one."""


@lru_cache(maxsize=1)
def cuobjdump_path() -> str:
    try:
        import nvidia.cu13

        wheels = [str(Path(folder, "bin")) for folder in nvidia.cu13.__path__]
    except ImportError:
        wheels = []
    if path := cuda_tool("cuobjdump", *wheels):
        return path
    raise DisassemblerMissing("cuobjdump not found: install the CUDA toolkit or `pip install "
                              "nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`")


def dump_sass(cubin: str) -> str:
    """The SASS listing of ``cubin``; cuobjdump runs nvdisasm from its own folder."""
    tool = cuobjdump_path()
    env = {**os.environ, "PATH": os.path.dirname(tool) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run([tool, "--dump-sass", cubin], capture_output=True, text=True, check=True,
                          env=env).stdout


def opcode(instruction: str) -> str:
    """The opcode with its modifiers (``HGMMA.64x128x16.F32``) of one SASS instruction, its guard
    predicate (``@!P0``) left out; empty for a line that holds none."""
    words = [word for word in instruction.split() if not word.startswith("@")]
    return words[0] if words else ""


def count(sass: str, mnemonic: str) -> int:
    """How many instructions of ``sass`` (predicated or not) start with ``mnemonic`` (``HGMMA``, ``LDL``)."""
    return sum(opcode(line.split("*/", 1)[-1]).startswith(mnemonic) for line in sass.splitlines())
