"""The CPU backend: the system C compiler builds a shared object; ctypes runs, times and verifies it."""

from __future__ import annotations

import _ctypes
import ctypes
import json
import os
import platform
import shlex
import subprocess
import tempfile
import time
from collections import OrderedDict
from collections.abc import Mapping
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from tuner.kernel_templates.spec import KernelSpec, Source
from tuner.kernel_templates.target import Target

from .backend import Backend, TimingPolicy
from .cache import cache_key, cached_path, store_atomically
from .measurement import Artifact, Job, Measurement, Status, Timing, error_line, tail, verdict
from .stats import REFERENCE_NOT_FINITE, error_metrics, summarize

COMPILE_TIMEOUT_S = 120.0

_CTYPES = {"int32": ctypes.c_int32, "int64": ctypes.c_int64,
           "float32": ctypes.c_float, "float64": ctypes.c_double}


class CpuBackend(Backend):
    name = "cpu"
    archs = ("cpu",)

    # Kernels loaded at once in a measuring process: more are unloaded, oldest first, so a long
    # study's measuring process keeps a bounded number of shared objects mapped.
    LOADED_MAX = 4

    def __init__(self) -> None:
        self._libraries: OrderedDict[str, ctypes.CDLL] = OrderedDict()

    def compiler(self) -> list[str]:
        return shlex.split(os.environ.get("CC", "cc"))

    def compiler_version(self) -> str:
        return _compiler_version(tuple(self.compiler()))

    def compile(self, source: Source, target: Target) -> Artifact:
        digest = source.digest()
        key = cache_key(source.code_digest(), self.compiler_version(), _host_target(source.options), _RECIPE)
        path, meta = cached_path(key, ".so"), cached_path(key, ".json")
        if path.exists() and meta.exists():  # a hit reports the compile's own seconds: what the variant cost
            return Artifact(digest, str(path), json.loads(meta.read_text())["compile_s"], cached=True,
                            resources=_resources(path))
        start = time.perf_counter()
        binary, log = self._build(source)
        elapsed = time.perf_counter() - start
        if binary is None:
            return Artifact(digest, None, elapsed, cached=False, log=log,
                            error=f"compile failed: {error_line(log, _last_line(log))}")
        store_atomically(binary, path)
        store_atomically(json.dumps({"compile_s": elapsed}).encode(), meta)
        return Artifact(digest, str(path), elapsed, cached=False, resources=_resources(path), log=log)

    def _build(self, source: Source) -> tuple[bytes | None, str]:
        """(the shared object's bytes, the compiler's output), or (None, why there is none).

        Compiled and linked in two steps: ``-ffast-math`` at link time adds crtfastmath.o, whose
        constructor turns on flush-to-zero for the whole process that loads the library, so every
        kernel measured after it there (and NumPy's reference) would run with denormals flushed.
        """
        with tempfile.TemporaryDirectory(prefix="tuner-cc-") as tmp:
            src, obj, out = Path(tmp) / "kernel.c", Path(tmp) / "kernel.o", Path(tmp) / "kernel.so"
            src.write_text(source.code)
            compile_flags = [o for o in source.options if not o.startswith("-l")]
            link_flags = [o for o in source.options if o not in _PROCESS_WIDE_FLAGS]
            logs = []
            for command in ([*self.compiler(), "-c", "-fPIC", "-o", str(obj), str(src), *compile_flags],
                            # libraries (-lm) must follow the code that uses them
                            [*self.compiler(), "-shared", "-o", str(out), str(obj), *link_flags]):
                ok, log = _run(command)
                logs.append(log)
                if not ok:
                    return None, log
            return out.read_bytes(), "".join(logs)

    def device(self, target: Target) -> Target:
        return target.with_device(_cpu_name(), {"cores": os.cpu_count() or 1})

    def environment(self) -> dict[str, Any]:
        return {"host": platform.node(), "device": _cpu_name(), "cpu_count": os.cpu_count(),
                "compiler": self.compiler_version(), "numpy": np.__version__,
                "python": platform.python_version(), "tuner": _tuner_version()}

    def measure(self, job: Job, artifact: Artifact, spec: KernelSpec, policy: TimingPolicy) -> Measurement:
        def result(status: Status, reason: str | None = None, **values: Any) -> Measurement:
            return Measurement(job.trial_id, status, artifact.source_hash,
                               compile_time_s=artifact.compile_time_s, resources=artifact.resources,
                               environment=self.environment(), reason=reason, log=artifact.log, **values)

        if artifact.error is not None or artifact.path is None:
            return result(Status.COMPILE_ERROR, artifact.error or "compile failed")
        try:
            function = self._function(artifact.path, job.source.entry)
        except (OSError, AttributeError) as exc:
            return result(Status.LAUNCH_ERROR, f"cannot load {job.source.entry} from {artifact.path}: {exc}")
        try:
            bench = _Bench.prepare(spec, job, function)
        except Exception as exc:  # the template is user code: its failure is this trial's data
            return result(Status.LAUNCH_ERROR, f"the template failed to prepare inputs: {type(exc).__name__}: {exc}")
        if not np.isfinite(bench.expected).all():
            return result(Status.WRONG_RESULT, REFERENCE_NOT_FINITE)
        timing = bench.time(policy)
        rel_l2, max_abs = error_metrics(bench.output, bench.expected)
        status, reason = verdict(rel_l2, spec.max_error(job.config, job.problem))
        return result(status, reason, timing=timing, rel_l2=rel_l2, max_abs=max_abs)

    def _function(self, path: str, entry: str) -> Any:
        library = self._libraries.get(path)
        if library is None:
            library = self._libraries[path] = ctypes.CDLL(path)
            while len(self._libraries) > self.LOADED_MAX:
                _, oldest = self._libraries.popitem(last=False)
                _dlclose(oldest)
        self._libraries.move_to_end(path)
        function = getattr(library, entry)
        function.restype = None
        return function


def _dlclose(library: ctypes.CDLL) -> None:
    """Unloads a kernel's shared object. Safe once its last call returned: an OpenMP kernel's
    worker threads then wait inside libgomp, which stays loaded, not in the kernel's code."""
    _ctypes.dlclose(library._handle)


class _Bench:
    """One kernel bound to two input sets: set A for warm-up and timing, set B for the last timed
    run, whose output is verified. A kernel that skips work after its first call, or reuses a
    previous result, fails verification; the output is poisoned before every run."""

    def __init__(self, run_a: _Call, run_b: _Call, output: np.ndarray, expected: np.ndarray) -> None:
        self.run_a, self.run_b, self.output, self.expected = run_a, run_b, output, expected

    @classmethod
    def prepare(cls, spec: KernelSpec, job: Job, function: Any) -> _Bench:
        rng = np.random.default_rng(job.seed)
        inputs_a = spec.make_inputs(job.problem, rng)
        inputs_b = spec.make_inputs(job.problem, rng)
        expected = np.asarray(spec.reference(inputs_b, job.problem))  # before any run can touch B
        out_spec = spec.output_spec(job.problem)
        output = np.empty(out_spec.shape, dtype=out_spec.dtype)
        if expected.shape != output.shape:
            raise ValueError(f"reference shape {expected.shape} differs from output_spec {output.shape}")
        scalars = [_CTYPES[c_type](value) for c_type, value in job.source.scalars]
        return cls(_Call(function, spec.kernel_inputs(inputs_a, job.config), output, scalars),
                   _Call(function, spec.kernel_inputs(inputs_b, job.config), output, scalars),
                   output, expected)

    def time(self, policy: TimingPolicy) -> Timing:
        flush = _flusher() if policy.flush_l2 else None
        started, runs = time.perf_counter(), 0
        while not runs or time.perf_counter() < started + policy.warmup_s:
            self._timed(self.run_a, flush)
            runs += 1
        # Repeats from the wall time of a whole repeat, flush and poison included (as Triton's
        # estimate does): sized by the kernel alone, a tiny kernel's repeats would each pay a
        # full cache flush and blow far past the time budget.
        repeats = policy.repeats_for((time.perf_counter() - started) / runs)
        samples = [self._timed(self.run_a, flush) for _ in range(repeats - 1)]
        samples.append(self._timed(self.run_b, flush))
        return summarize(samples)

    def _timed(self, run: _Call, flush: _Flusher | None) -> float:
        _poison(self.output)
        if flush is not None:
            flush()
        start = time.perf_counter()
        run()
        return time.perf_counter() - start


class _Call:
    """The call ``entry(*inputs, output, *scalars)`` with its arguments built once; it holds the
    arrays, so the pointers stay valid while it lives."""

    def __init__(self, function: Any, inputs: Mapping[str, Any], output: np.ndarray, scalars: list[Any]) -> None:
        self._buffers = [np.ascontiguousarray(value) for value in inputs.values()] + [output]
        pointers = [ctypes.c_void_p(buffer.ctypes.data) for buffer in self._buffers]
        self._function, self._arguments = function, (*pointers, *scalars)

    def __call__(self) -> None:
        self._function(*self._arguments)


def _poison(output: np.ndarray) -> None:
    """Fill the output with what no correct kernel writes: NaN, or the largest integer."""
    output.fill(np.nan if np.issubdtype(output.dtype, np.inexact) else np.iinfo(output.dtype).max)


class _Flusher:
    """Evicts the inputs from the caches before a run by reading a buffer as large as the LLC.

    Reading, not writing: a written buffer would leave the cache full of dirty lines whose
    write-back then competes with the timed kernel for memory bandwidth. One element per 64-byte
    line is enough to pull every line in.
    """

    def __init__(self) -> None:
        self._scratch = np.ones(_last_level_cache_bytes() // 8, dtype=np.float64)
        self.checksum = 0.0  # kept, so the reads cannot be skipped

    def __call__(self) -> None:
        self.checksum += float(self._scratch[::8].sum())


@cache
def _flusher() -> _Flusher:
    """The process's one flush buffer: as large as the LLC (hundreds of MB on some VMs), so
    allocated and filled once, not again for every measurement."""
    return _Flusher()


@cache
def _last_level_cache_bytes() -> int:
    units = {"K": 1 << 10, "M": 1 << 20}
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        text = (index / "size").read_text().strip()  # e.g. "32768K"
        sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
    return max(sizes, default=32 << 20)  # no sysfs (not Linux): larger than most LLCs


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no compiler output"


def _resources(path: Path) -> dict[str, Any]:
    return {"so_bytes": path.stat().st_size}


def _host_target(options: tuple[str, ...]) -> str:
    """What else the binary depends on: this host's ISA, and its exact CPU under -march=native."""
    native = any(option in ("-march=native", "-mcpu=native", "-mtune=native") for option in options)
    return platform.machine() + ("|" + _cpu_flags() if native else "")


@cache
def _compiler_version(compiler: tuple[str, ...]) -> str:
    try:
        done = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    lines = done.stdout.splitlines()
    return lines[0].strip() if lines else "unknown"


@cache
def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def _cpu_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def _cpu_flags() -> str:
    info = _cpuinfo()
    return info.get("flags") or info.get("Features") or _cpu_name()


@cache
def _tuner_version() -> str:
    try:
        return version("tuner")
    except PackageNotFoundError:
        return "unknown"


BACKEND = CpuBackend()


# How _build turns a source into a library; part of the cache key, so a changed recipe rebuilds.
_RECIPE = "compile, then link without process-wide math flags"

# Flags whose link-time effect reaches the whole process that loads the library (see _build).
_PROCESS_WIDE_FLAGS = frozenset({"-ffast-math", "-Ofast", "-funsafe-math-optimizations"})


def _run(command: list[str]) -> tuple[bool, str]:
    """Runs one compiler step: (whether it succeeded, what it printed or why it did not run)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except FileNotFoundError:
        return False, f"C compiler {command[0]!r} not found: install gcc or clang, or set CC"
    except subprocess.TimeoutExpired:
        return False, f"{command[0]} did not finish within {COMPILE_TIMEOUT_S:.0f} s"
    log = tail(done.stderr + done.stdout)
    if done.returncode != 0:
        return False, log or f"{command[0]} exited with status {done.returncode}"
    return True, log
