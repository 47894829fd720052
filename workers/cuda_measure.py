"""Timing and verifying one compiled CUDA kernel on the GPU (torch tensors, CUDA events).

Habits from Triton's ``do_bench``: estimate first and derive the repeats from a time budget (the
estimate's runs count toward the warm-up), flush the L2 before every run that is timed or sizes
the timing, time each repeat with its own pair of events, keep quantiles. The flush writes a
buffer of twice the device's L2 (:func:`flush_buffer`), allocated once per device and process.

Habits for trust: fresh random inputs (never zeros); the output poisoned (NaN, or a sentinel for
integers) before every *verified* run; the first run verified before any timing; and the inputs
redrawn before the last timed run, whose output is verified too, so a kernel that skips work
after its first run cannot pass. The runs in between (estimate, warm-up, the other timed runs)
are verified by nothing, so they are not poisoned: only the flush precedes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tuner.kernel_templates.spec import KernelSpec

from .backend import TimingPolicy
from .cuda_runtime import environment, sm_clock_mhz
from .measurement import Artifact, Job, Measurement, Status, verdict
from .stats import REFERENCE_NOT_FINITE, summarize

# The L2 flush writes this many times the device's L2 (torch's L2_cache_size), so that no line of
# the previous run survives it; never less than the floor (a device reporting a tiny or no L2),
# and the fallback where torch reports none at all (Triton's fixed 256 MB).
L2_FLUSH_FACTOR = 2
L2_FLUSH_MIN_BYTES = 32 << 20
L2_FLUSH_FALLBACK_BYTES = 256 << 20
ESTIMATE_RUNS = 5


def measure(job: Job, artifact: Artifact, spec: KernelSpec, policy: TimingPolicy) -> Measurement:
    result = Measurement(trial_id=job.trial_id, status=Status.OK, source_hash=artifact.source_hash,
                         compile_time_s=artifact.compile_time_s,
                         resources={**artifact.resources, "dynamic_shared_bytes": job.source.shared_bytes},
                         environment=environment(), log=artifact.log)
    if artifact.error is not None or artifact.path is None:
        result.status, result.reason = Status.COMPILE_ERROR, artifact.error
        return result
    try:
        _run(job, artifact.path, spec, policy, result)
    except _launch_errors() as exc:
        result.status, result.reason = Status.LAUNCH_ERROR, f"{type(exc).__name__}: {exc}"
    return result


def _run(job: Job, cubin: str, spec: KernelSpec, policy: TimingPolicy, result: Measurement) -> None:
    """Fills ``result`` in: a verified first run, then timing, then the last timed run verified."""
    import torch

    from .cuda_launch import launcher

    rng = np.random.default_rng(job.seed)
    inputs = spec.make_inputs(job.problem, rng)
    out_spec = spec.output_spec(job.problem)
    out = torch.empty(out_spec.shape, dtype=getattr(torch, out_spec.dtype), device="cuda")
    launch = launcher(cubin, job.source, spec.kernel_inputs(inputs, job.config), out)
    bound = spec.max_error(job.config, job.problem)
    poison(out)
    launch()
    if not _verify(result, out, spec.reference(inputs, job.problem), bound):
        return
    samples = time_launches(launch, out, policy, before_last=lambda: _redraw(inputs, spec, job.problem, rng))
    result.timing = summarize(samples, clock_mhz=sm_clock_mhz())
    assert result.rel_l2 is not None and result.max_abs is not None  # set by the verified first run
    first = (result.rel_l2, result.max_abs)
    _verify(result, out, spec.reference(inputs, job.problem), bound)
    result.rel_l2, result.max_abs = max(first[0], result.rel_l2), max(first[1], result.max_abs)

def time_launches(launch: Callable[[], None], out: Any, policy: TimingPolicy,
                  before_last: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds of each timed launch. The L2 is flushed before every launch (``policy.flush_l2``);
    ``out`` is poisoned before the last timed launch alone, after ``before_last`` (which refreshes
    the inputs), since that output is the one the caller verifies: the runs before it are checked
    by nothing, and poisoning them would only add a fill of the output to every repeat."""
    import torch

    flush = flush_buffer() if policy.flush_l2 else None

    def prepare() -> None:
        if flush is not None:
            flush.zero_()

    estimate = _estimate_s(launch, prepare)
    for _ in range(warmup_runs(policy.warmup_s, estimate)):
        prepare()
        launch()
    repeats = policy.repeats_for(estimate)
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for index, (start, end) in enumerate(events):
        if index == repeats - 1:
            before_last()
            poison(out)
        prepare()
        start.record()
        launch()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / 1e3 for start, end in events]


def warmup_runs(warmup_s: float, estimate_s: float) -> int:
    """Runs after the estimate's that bring the warm-up to ``warmup_s``: the estimate's own
    ``ESTIMATE_RUNS`` (flushed like every other) count toward it."""
    return max(0, int(warmup_s / estimate_s) - ESTIMATE_RUNS)


def poison(out: Any) -> None:
    """Fills ``out`` with what no kernel writes on purpose: NaN for floating-point outputs, the
    type's largest value for integer ones, so unwritten elements fail verification."""
    import torch

    out.fill_(math.nan if out.dtype.is_floating_point else torch.iinfo(out.dtype).max)


def l2_flush_bytes(l2_bytes: int | None) -> int:
    """Bytes a flush writes on a device whose L2 holds ``l2_bytes``: ``L2_FLUSH_FACTOR`` times it,
    at least ``L2_FLUSH_MIN_BYTES``; ``L2_FLUSH_FALLBACK_BYTES`` where the size is unknown."""
    if not l2_bytes or l2_bytes <= 0:
        return L2_FLUSH_FALLBACK_BYTES
    return max(L2_FLUSH_FACTOR * l2_bytes, L2_FLUSH_MIN_BYTES)


_FLUSH_BUFFERS: dict[int, Any] = {}  # device index -> its flush buffer, for the process's life


def flush_buffer(device: int | None = None) -> Any:
    """The flush buffer of a GPU (default: torch's current one), allocated the first time it is
    asked for and reused by every measurement after: int32 elements, :func:`l2_flush_bytes` of them."""
    import torch

    index = torch.cuda.current_device() if device is None else device
    buffer = _FLUSH_BUFFERS.get(index)
    if buffer is None:
        l2 = getattr(torch.cuda.get_device_properties(index), "L2_cache_size", None)
        buffer = torch.empty(l2_flush_bytes(l2) // 4, dtype=torch.int32, device=f"cuda:{index}")
        _FLUSH_BUFFERS[index] = buffer
    return buffer


def _estimate_s(launch: Callable[[], None], prepare: Callable[[], None]) -> float:
    """Seconds per launch, flush included, over a few runs: only sizes the warm-up and repeats."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(ESTIMATE_RUNS):
        prepare()
        launch()
    end.record()
    end.synchronize()
    return max(start.elapsed_time(end) / 1e3 / ESTIMATE_RUNS, 1e-7)


def _redraw(inputs: Mapping[str, Any], spec: KernelSpec, problem: Mapping[str, Any],
            rng: np.random.Generator) -> None:
    """New random values into the same buffers, so the packed launch arguments stay valid."""
    for name, fresh in spec.make_inputs(problem, rng).items():
        inputs[name].copy_(fresh)


def _verify(result: Measurement, out: Any, ref: Any, bound: float) -> bool:
    """Stores the output's errors; marks the result wrong (and returns False) past ``bound``."""
    import torch

    if not bool(torch.isfinite(torch.as_tensor(ref)).all()):
        result.status, result.reason = Status.WRONG_RESULT, REFERENCE_NOT_FINITE
        return False
    result.rel_l2, result.max_abs = error_metrics(out, ref)
    status, reason = verdict(result.rel_l2, bound)
    if status is not Status.OK:
        result.status, result.reason = status, reason
    return result.status is Status.OK


def error_metrics(out: Any, ref: Any, ref_norm: float | None = None) -> tuple[float, float]:
    """``stats.error_metrics`` (relative L2 error, max absolute error; both ``inf`` for an output
    holding NaN or inf) computed where the tensors are, without copying them to float64.

    The difference is taken in the wider of the two types, at least float32 (a 16-bit output
    against a float32 reference: one pass, each difference rounded once, to 2^-24 of itself) and
    its norms reduced there, so the relative error is exact to about 1e-6 of itself, far finer than
    any bound it is held to. Integer outputs are compared in float64, as before. ``ref_norm`` is
    the reference's L2 norm where the caller has it (else computed here, in float64).
    A difference beyond float32's range (a finite but huge output) falls back to float64."""
    import torch

    ref = torch.as_tensor(ref, device=out.device)
    floating = out.dtype.is_floating_point and ref.dtype.is_floating_point
    wide = torch.promote_types(torch.promote_types(out.dtype, ref.dtype), torch.float32) if floating else torch.float64
    if torch.result_type(out, ref) == wide:
        diff = torch.sub(out, ref)  # the cast of the narrower operand happens inside the one kernel
    else:
        diff = out.to(wide) - ref.to(wide)
    if diff.numel() == 0:
        return 0.0, 0.0
    norm, worst = torch.stack([torch.linalg.vector_norm(diff), torch.linalg.vector_norm(diff, ord=math.inf)]).tolist()
    if not (math.isfinite(norm) and math.isfinite(worst)):
        if not bool(torch.isfinite(out).all()):
            return math.inf, math.inf
        if wide != torch.float64:  # finite, but its squares overflow float32
            return error_metrics(out.double(), ref.double(), ref_norm)
    denom = _norm64(ref) if ref_norm is None else ref_norm
    return (norm / denom if denom > 0 else norm), worst


def _norm64(tensor: Any) -> float:
    import torch

    wide = tensor if tensor.dtype.is_floating_point or tensor.dtype.is_complex else tensor.double()
    return float(torch.linalg.vector_norm(wide, dtype=torch.float64))


def _launch_errors() -> tuple[type[BaseException], ...]:
    """What a bad module, a bad tensor map or a faulting kernel raises: the driver's errors (a
    RuntimeError), CuPy's and torch's CUDA errors, and ValueError for a map its buffer cannot carry."""
    import cupy

    from .cuda_launch import CudaDriverError

    return (CudaDriverError, cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError, RuntimeError,
            ValueError)
