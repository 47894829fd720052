"""Timing and verifying one compiled CUDA kernel on the GPU (torch tensors, CUDA events).

Habits from Triton's ``do_bench``: estimate first and derive the repeats from a time budget (the
estimate's runs count toward the warm-up), flush the L2 before every run that is timed or sizes
the timing, time each repeat with its own pair of events, keep quantiles. The flush writes a
buffer of at least 256 MiB, five times the L2 where that is more (:func:`flush_buffer`), allocated
once per device and process.

Habits for trust: random inputs (never zeros); the output poisoned (NaN, or a sentinel for
integers) before every *verified* run; the first run verified before any timing; and a second
input set copied in before the last timed run, whose output is verified too, so a kernel that
skips work after its first run cannot pass. The runs in between (estimate, warm-up, the other
timed runs) are verified by nothing, so they are not poisoned: only the flush precedes them.

One study, one set of inputs: a job's seed is its study's (``tuner.study``), so every config of
a study runs on the same two input sets and is verified against the same references, and their
errors compare (the latency-error front ranks configs on one input, not on each its own draw).
The measuring process keeps, for the last (template, problem, seed, device) it measured, both
sets and both references (:class:`MeasurementInputs`); each trial copies the first set into the
buffers its kernel runs on, and the second in before its last timed run. The cache keeps its own
copies, which no kernel is given: after each verified run the kernel's buffers must still hold
what was copied in (a kernel that writes into its inputs is a wrong result), and after every
trial the cached tensors must still add up to what they did when drawn (a kernel that wrote
outside its buffers, into them, is a wrong result and the cache is dropped). Any other failure
drops it too, so a trial that raised never leaves it behind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tuner.kernel_templates.families import Families
from tuner.kernel_templates.spec import KernelSpec

from .backend import TimingPolicy
from .cuda_runtime import environment, sm_clock_mhz
from .measurement import Artifact, Job, Measurement, Status, verdict
from .stats import REFERENCE_NOT_FINITE, summarize

# The L2 flush writes Triton's 256 MiB, or on a device with a larger L2 as many times its L2 as that
# is of the H100's 50 MiB (torch's L2_cache_size), and 256 MiB where no size is reported. Twice the L2
# is not enough: on an H100, a 16 MB memory-bound kernel timed 18.24 us with no flush, 18.80 after a
# 100 MiB flush and 19.58 after 256 MiB (bench/results/measure_gpu_tests_first.log), so a 2x flush
# left more than half of the kernel's L2 benefit in place.
L2_FLUSH_FACTOR = 5
L2_FLUSH_MIN_BYTES = 256 << 20
L2_FLUSH_FALLBACK_BYTES = 256 << 20
ESTIMATE_RUNS = 5

WROTE_INTO_INPUTS = "the kernel wrote into its input(s) {names}: a kernel must leave its inputs as it found them"
WROTE_OUTSIDE = ("the measuring process's cached inputs or references changed while the kernel ran: it wrote "
                 "outside its buffers")


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
    """Fills ``result`` in: a verified first run, then timing, then the last timed run verified;
    then the cache checked for what the kernel may have written outside its buffers."""
    import torch

    from .cuda_launch import launcher

    try:
        inputs = measurement_inputs(spec, job.problem, job.seed)
        if not inputs.finite:
            result.status, result.reason = Status.WRONG_RESULT, REFERENCE_NOT_FINITE
            return
        kernel_inputs = spec.kernel_inputs(inputs.work, job.config)
        out_spec = spec.output_spec(job.problem)
        out = torch.empty(out_spec.shape, dtype=getattr(torch, out_spec.dtype), device="cuda")
        launch = launcher(cubin, job.source, kernel_inputs, out)
        _verified_and_timed(launch, out, inputs, list(kernel_inputs), spec.max_error(job.config, job.problem),
                            policy, result)
        intact = inputs.intact()
    except BaseException:
        drop_measurement_inputs()  # a kernel that faulted may have written anywhere
        raise
    if not intact:
        drop_measurement_inputs()
        if result.status is Status.OK:
            result.status, result.reason = Status.WRONG_RESULT, WROTE_OUTSIDE


def _verified_and_timed(launch: Callable[[], None], out: Any, inputs: MeasurementInputs, names: list[str],
                        bound: float, policy: TimingPolicy, result: Measurement) -> None:
    inputs.load(0)
    poison(out)
    launch()
    if not (_verify(result, out, inputs.references[0], inputs.ref_norms[0], bound)
            and _kept(result, inputs, 0, names)):
        return
    samples = time_launches(launch, out, policy, before_last=lambda: inputs.load(1))
    result.timing = summarize(samples, clock_mhz=sm_clock_mhz())
    assert result.rel_l2 is not None and result.max_abs is not None  # set by the verified first run
    first = (result.rel_l2, result.max_abs)
    if _verify(result, out, inputs.references[1], inputs.ref_norms[1], bound):
        _kept(result, inputs, 1, names)
    result.rel_l2, result.max_abs = max(first[0], result.rel_l2), max(first[1], result.max_abs)


def _kept(result: Measurement, inputs: MeasurementInputs, which: int, names: list[str]) -> bool:
    """Whether the kernel's buffers still hold input set ``which``; marks the result wrong if not."""
    changed = inputs.changed(which, names)
    if changed:
        result.status, result.reason = Status.WRONG_RESULT, WROTE_INTO_INPUTS.format(names=", ".join(changed))
    return not changed


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


# ---- the inputs of a study, kept between its trials ----


class MeasurementInputs:
    """The two input sets of one (template, problem, seed) on one device, and their references,
    drawn and computed once for every trial that measures on them.

    ``work`` holds the buffers kernels run on, as ``make_inputs`` returned them (their layout,
    strides included); ``sets`` are the cache's own copies of the first and the second draw,
    which no kernel is given; ``references[i]`` is the reference of ``sets[i]``, computed before
    any kernel ran, and ``ref_norms[i]`` its L2 norm (float64). ``finite`` says whether both
    references are finite (a template whose reference is not cannot verify anything).
    """

    def __init__(self, key: Any, spec: KernelSpec, problem: Mapping[str, Any], seed: int):
        import torch

        self.key = key
        rng = np.random.default_rng(seed)
        self.work: dict[str, Any] = spec.make_inputs(problem, rng)
        second = spec.make_inputs(problem, rng)  # the draw after the first, as one rng gives them
        self.sets = ({name: _own_copy(value) for name, value in self.work.items()},
                     {name: _dense(value) for name, value in second.items()})
        self.references = tuple(_dense(torch.as_tensor(spec.reference(s, problem))) for s in self.sets)
        self.finite = all(bool(torch.isfinite(ref).all()) for ref in self.references)
        self.ref_norms = tuple(_norm64(ref) if self.finite else math.nan for ref in self.references)
        self._sums = self._fingerprint()

    def load(self, which: int) -> None:
        """Copies input set ``which`` (0: the first, 1: the second) into the kernel's buffers."""
        for name, buffer in self.work.items():
            if _is_tensor(buffer):
                buffer.copy_(self.sets[which][name])

    def changed(self, which: int, names: list[str]) -> list[str]:
        """Those of the buffers ``names`` that no longer hold set ``which`` bit for bit."""
        import torch

        return [name for name in names if _is_tensor(self.work[name])
                and not torch.equal(_bits(self.work[name]), _bits(self.sets[which][name]))]

    def intact(self) -> bool:
        """Whether every cached tensor (both sets, both references) holds what it held when made."""
        return self._fingerprint() == self._sums

    def nbytes(self) -> int:
        tensors = [*self.work.values(), *self.sets[0].values(), *self.sets[1].values(), *self.references]
        return sum(t.numel() * t.element_size() for t in tensors if _is_tensor(t))

    def _fingerprint(self) -> list[int]:
        """The sum of each cached tensor's 32-bit words (bytes where its size is no multiple of 4):
        exact in int64, so any write that changes a value changes one (but for ones that cancel)."""
        import torch

        tensors = [t for s in self.sets for t in s.values() if _is_tensor(t)] + list(self.references)
        if not tensors:
            return []
        return torch.stack([_word_sum(t) for t in tensors]).tolist()


_cached: MeasurementInputs | None = None


def measurement_inputs(spec: KernelSpec, problem: Mapping[str, Any], seed: int) -> MeasurementInputs:
    """The inputs and references of (``spec``, ``problem``, ``seed``) on torch's current device:
    the process's cached ones where they are for the same, else drawn now and cached in their
    place (one problem at a time: the last one's tensors are let go before the next are drawn)."""
    global _cached
    key = inputs_key(spec, problem, seed)
    if _cached is not None and _cached.key == key:
        return _cached
    _cached = None
    _cached = MeasurementInputs(key, spec, problem, seed)
    return _cached


def drop_measurement_inputs() -> None:
    """Forgets the cached inputs and references (the next measurement draws them again)."""
    global _cached
    _cached = None


def cached_measurement_inputs() -> MeasurementInputs | None:
    """The cached inputs, if any (for tests and benchmarks)."""
    return _cached


def inputs_key(spec: KernelSpec, problem: Mapping[str, Any], seed: int) -> tuple[Any, ...]:
    """Everything the inputs and references depend on. A spec's methods are pure functions of their
    arguments (KernelSpec's contract), so its ``make_inputs`` and ``reference`` functions, the
    problem, the seed and the device decide them; the families of one kernel inherit both from the
    class that defines its problem, so a study over several families shares one cache entry. A
    :class:`Families` delegates to its default member, whose functions are the ones that count."""
    import torch

    drawer = next(iter(spec.members.values())) if isinstance(spec, Families) else spec
    device = torch.cuda.current_device() if torch.cuda.is_available() else None
    return (type(drawer).make_inputs, type(drawer).reference, json.dumps(dict(problem), sort_keys=True), int(seed),
            device)


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _own_copy(value: Any) -> Any:
    """A dense copy of a tensor (no storage shared with it); other values as they are."""
    import torch

    return value.clone(memory_format=torch.contiguous_format) if _is_tensor(value) else value


def _dense(value: Any) -> Any:
    return value.contiguous() if _is_tensor(value) else value


# Integer types of each element size: a tensor's bits, compared or summed as integers (NaN == NaN).
_INT_OF_SIZE = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


def _bits(tensor: Any) -> Any:
    import torch

    name = _INT_OF_SIZE.get(tensor.element_size())
    return tensor.view(getattr(torch, name)) if name and tensor.dtype != torch.bool else tensor


def _word_sum(tensor: Any) -> Any:
    import torch

    raw = tensor.detach().reshape(-1).view(torch.uint8)
    words = raw.view(torch.int32) if raw.numel() % 4 == 0 else raw
    return words.sum(dtype=torch.int64)


def _norm64(tensor: Any) -> float:
    import torch

    wide = tensor if tensor.dtype.is_floating_point or tensor.dtype.is_complex else tensor.double()
    return float(torch.linalg.vector_norm(wide, dtype=torch.float64))


# ---- verification ----


def _verify(result: Measurement, out: Any, ref: Any, ref_norm: float, bound: float) -> bool:
    """Stores the output's errors against a finite ``ref``; marks the result wrong (and returns
    False) past ``bound``."""
    result.rel_l2, result.max_abs = error_metrics(out, ref, ref_norm)
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


def _launch_errors() -> tuple[type[BaseException], ...]:
    """What a bad module, a bad tensor map or a faulting kernel raises: the driver's errors (a
    RuntimeError), CuPy's and torch's CUDA errors, and ValueError for a map its buffer cannot carry."""
    import cupy

    from .cuda_launch import CudaDriverError

    return (CudaDriverError, cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError, RuntimeError,
            ValueError)
