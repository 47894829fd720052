"""NVRTC through ``cuda-bindings``: CUDA C++ to a cubin inside this process, without a GPU.

NVRTC has no host headers: a template includes only device headers (``cuda_fp16.h``,
``cuda_bf16.h``, CCCL's ``cuda/...``), found through ``cuda-pathfinder`` in the CUDA toolkit or in
NVIDIA's pip wheels. ptxas runs with ``-v``, so the program log carries the same resource report
as nvcc's ``--resource-usage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# nvcc options with another spelling (or no meaning) in NVRTC. nvcc's -O levels set the host
# compiler's optimization; device code is optimized by default in both.
_HOST_ONLY = ("-O0", "-O1", "-O2", "-O3")
_RENAMED_PREFIXES = (("-Xptxas=", "--ptxas-options="), ("-maxrregcount=", "--maxrregcount="))


class NvrtcMissing(Exception):
    """cuda-bindings or the NVRTC library is not installed; the message says what to install."""


@dataclass(frozen=True)
class Output:
    """One NVRTC compile: the cubin (None on failure), the program log and an error line."""

    cubin: bytes | None
    log: str
    error: str | None


def _module() -> Any:
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        raise NvrtcMissing("NVRTC needs the cuda-bindings and nvidia-cuda-nvrtc packages: "
                           "pip install 'tuner[nvrtc]'") from None
    return nvrtc


@lru_cache(maxsize=1)
def version() -> str:
    """NVRTC's version, ``13.5``; raises NvrtcMissing where the bindings or the library cannot be loaded."""
    nvrtc = _module()
    try:
        result, major, minor = nvrtc.nvrtcVersion()
    except Exception as exc:  # the bindings load libnvrtc lazily and say so in their own way
        raise NvrtcMissing(f"the NVRTC library could not be loaded ({exc}): "
                           "pip install nvidia-cuda-nvrtc") from None
    _check(nvrtc, result, "nvrtcVersion")
    return f"{major}.{minor}"


def available() -> bool:
    try:
        version()
    except NvrtcMissing:
        return False
    return True


@lru_cache(maxsize=1)
def include_dirs() -> tuple[str, ...]:
    """The CUDA toolkit's device headers (cudart's, then CCCL's), wherever pathfinder finds them."""
    try:
        from cuda.pathfinder import find_nvidia_header_directory
    except ImportError:
        return ()
    found = []
    for library in ("cudart", "cccl"):
        try:
            path = find_nvidia_header_directory(library)
        except Exception:  # an unknown name in an older pathfinder: that folder is optional
            path = None
        if path:
            found.append(str(path))
    return tuple(found)


def options_for(arch: str, options: tuple[str, ...]) -> list[str]:
    """NVRTC's command line for a cubin of ``arch`` from a source's nvcc-style ``options``."""
    translated = [f"-arch={arch}", "--ptxas-options=-v", *(f"-I{d}" for d in include_dirs())]
    for option in options:
        if option in _HOST_ONLY:
            continue
        for old, new in _RENAMED_PREFIXES:
            if option.startswith(old):
                option = new + option.removeprefix(old)
        translated.append(option)
    return translated


def compile_cubin(code: str, arch: str, options: tuple[str, ...]) -> Output:
    """Compiles ``code`` for ``arch`` (a real arch such as ``sm_90a``)."""
    nvrtc = _module()
    result, program = nvrtc.nvrtcCreateProgram(code.encode(), b"kernel.cu", 0, [], [])
    _check(nvrtc, result, "nvrtcCreateProgram")
    try:
        args = [option.encode() for option in options_for(arch, options)]
        (result,) = nvrtc.nvrtcCompileProgram(program, len(args), args)
        log = _log(nvrtc, program)
        if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            return Output(None, log, f"NVRTC: {_name(result)}")
        _, size = nvrtc.nvrtcGetCUBINSize(program)
        cubin = b" " * size
        _check(nvrtc, nvrtc.nvrtcGetCUBIN(program, cubin)[0], "nvrtcGetCUBIN")
        return Output(cubin, log, None)
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def _log(nvrtc: Any, program: Any) -> str:
    _, size = nvrtc.nvrtcGetProgramLogSize(program)
    buffer = b" " * size
    nvrtc.nvrtcGetProgramLog(program, buffer)
    return buffer.rstrip(b"\0").decode(errors="replace")


def _name(result: Any) -> str:
    return getattr(result, "name", str(result))


def _check(nvrtc: Any, result: Any, call: str) -> None:
    if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"{call} failed: {_name(result)}")
