"""The CUDA measurement on a real GPU: a study's inputs and references drawn once and kept, what a
kernel writing into its inputs or outside its buffers gets, the L2 flush sized from the device and
reused, and the poisoning of the verified runs alone (workers/cuda_measure.py).

tests/test_cuda_measure_inputs.py checks the same pieces on torch CPU tensors."""

from __future__ import annotations

import dataclasses
import math
import statistics
import time

import pytest

from tests.conftest import require
from tuner.kernel_templates import Target, find_spec
from tuner.kernel_templates.testing.faulty_cuda import FaultyCuda
from tuner.workers import Job, SpecRef, Status, TimingPolicy, cuda_measure, get_backend
from tuner.workers.cuda_measure import (
    WROTE_OUTSIDE,
    cached_measurement_inputs,
    flush_buffer,
    l2_flush_bytes,
    time_launches,
)
from tuner.workers.cuda_runtime import gpu_count

pytestmark = pytest.mark.gpu

ARCH = "sm_90a"
TARGET = Target.documented(ARCH)
BACKEND = get_backend("cuda")
FAULTY = FaultyCuda()
AFFINE = FAULTY.validate_problem({"n": 1 << 22})  # y = 2x + 1 over 16 MB: fits any recent L2
QUICK = TimingPolicy(warmup_s=0.002, budget_s=0.005, min_repeats=20)
SIGNATURE = 'extern "C" __global__ void faulty(const float *x, float *y, long long n) {'
STORE = "    if (i < n) y[i] = 2.0f * x[i] + 1.0f;"


@pytest.fixture(scope="module", autouse=True)
def _gpu() -> None:
    require(gpu_count() > 0, "no CUDA GPU here: run bench/gpu_check.sh on a GPU machine")


@pytest.fixture(autouse=True)
def _fresh_cache():
    cuda_measure.drop_measurement_inputs()
    yield
    cuda_measure.drop_measurement_inputs()


def measured(spec, config: dict, problem: dict, seed: int = 0, source=None, policy: TimingPolicy = QUICK,
             number: int = 0):
    source = source or spec.render(config, problem)
    job = Job(trial_id=number, spec=SpecRef(spec.name, "cuda"), config=config, problem=problem, target=TARGET,
              source=source, seed=seed)
    return BACKEND.measure(job, BACKEND.compile(source, TARGET), spec, policy)


def edited(source, *replacements: tuple[str, str], **fields):
    code = source.code
    for old, new in replacements:
        assert old in code, old
        code = code.replace(old, new)
    return dataclasses.replace(source, code=code, **fields)


def test_the_configs_of_a_study_are_verified_on_the_same_inputs_drawn_once() -> None:
    """Every block size computes the same y, bit for bit: on one seed their errors are equal,
    which they are not on two; and the second trial found the first's draw in the cache."""
    first = measured(FAULTY, {"variant": "block64"}, AFFINE, seed=5)
    cached = cached_measurement_inputs()
    second = measured(FAULTY, {"variant": "block256"}, AFFINE, seed=5, number=1)
    assert first.status is second.status is Status.OK, (first.reason, second.reason)
    assert cached_measurement_inputs() is cached
    assert (first.rel_l2, first.max_abs) == (second.rel_l2, second.max_abs)
    other = measured(FAULTY, {"variant": "block256"}, AFFINE, seed=6, number=2)
    assert other.status is Status.OK and other.rel_l2 != second.rel_l2
    assert cached_measurement_inputs() is not cached  # one problem and seed at a time


def test_two_attention_configs_of_one_study_share_one_draw() -> None:
    spec = find_spec("attention", ARCH, "mma_sync")
    problem = spec.validate_problem({"B": 2, "H": 4, "S": 512, "D": 64})
    configs = [{"block_m": 128, "block_n": 64, "warps": 4, "stages": 3, "precision": "exact", "rescale": "always",
                "occupancy": 8},
               {"block_m": 64, "block_n": 64, "warps": 4, "stages": 2, "precision": "exact", "rescale": "always",
                "occupancy": 8}]
    device = BACKEND.device(TARGET)
    configs = [c for c in configs if spec.check(c, problem, device) is None]
    assert len(configs) == 2
    results, entries = [], []
    for number, config in enumerate(configs):
        results.append(measured(spec, config, problem, seed=3, number=number))
        entries.append(cached_measurement_inputs())
    assert all(r.status is Status.OK for r in results), [r.reason for r in results]
    assert entries[0] is entries[1] is not None


def test_a_kernel_writing_into_its_input_is_a_wrong_result_and_the_cache_survives_it() -> None:
    healthy = measured(FAULTY, {"variant": "block256"}, AFFINE, seed=1)
    cached = cached_measurement_inputs()
    source = FAULTY.render({"variant": "block256"}, AFFINE)
    negating = edited(source, (SIGNATURE, SIGNATURE.replace("const float *x", "float *x")),
                      (STORE, STORE + "\n    if (i < n) x[i] = -x[i];"))
    wrong = measured(FAULTY, {"variant": "block256"}, AFFINE, seed=1, source=negating, number=1)
    assert wrong.status is Status.WRONG_RESULT and "wrote into its input(s) x" in wrong.reason, wrong.reason
    again = measured(FAULTY, {"variant": "block256"}, AFFINE, seed=1, number=2)
    assert cached_measurement_inputs() is cached  # its own copies were never the kernel's to write
    assert again.status is Status.OK and (again.rel_l2, again.max_abs) == (healthy.rel_l2, healthy.max_abs)


def test_a_kernel_writing_outside_its_buffers_into_the_cache_is_caught_and_the_cache_dropped() -> None:
    healthy = measured(FAULTY, {"variant": "block256"}, AFFINE, seed=2)
    reference = cached_measurement_inputs().references[1]  # what the last timed run is verified against
    source = FAULTY.render({"variant": "block256"}, AFFINE)
    stray = edited(source, (SIGNATURE, SIGNATURE.replace("long long n)", "long long n, long long stray)")),
                   # the last bit of one double's mantissa, a step further at every launch: a change
                   # far too small for the verification to see, as a stray write's often is
                   (STORE, STORE + "\n    if (i == 0) ((unsigned int *)stray)[0] += 1u;"),
                   scalars=(*source.scalars, ("int64", reference.data_ptr())))
    wrong = measured(FAULTY, {"variant": "block256"}, AFFINE, seed=2, source=stray, number=1)
    assert wrong.status is Status.WRONG_RESULT and wrong.reason == WROTE_OUTSIDE, wrong.reason
    assert cached_measurement_inputs() is None
    again = measured(FAULTY, {"variant": "block256"}, AFFINE, seed=2, number=2)
    assert again.status is Status.OK and (again.rel_l2, again.max_abs) == (healthy.rel_l2, healthy.max_abs)


def test_the_flush_buffer_is_sized_from_the_l2_and_allocated_once() -> None:
    import torch

    buffer = flush_buffer()
    l2 = torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size
    assert buffer.numel() * buffer.element_size() == l2_flush_bytes(l2) >= 256 << 20
    for number in range(2):
        assert measured(FAULTY, {"variant": "block128"}, AFFINE, number=number).status is Status.OK
    assert flush_buffer() is buffer and flush_buffer().data_ptr() == buffer.data_ptr()
    print(f"\nL2 {l2 >> 20} MiB, flush {buffer.numel() * 4 >> 20} MiB")


def test_only_the_last_timed_run_is_poisoned_after_its_inputs_are_refreshed() -> None:
    import torch

    out, events = torch.zeros(4, device="cuda"), []

    def launch() -> None:
        events.append("nan" if bool(torch.isnan(out).all()) else "written")
        out.fill_(1.0)

    policy = TimingPolicy(warmup_s=0.0, budget_s=1e-6, min_repeats=20, max_repeats=20)
    time_launches(launch, out, policy, before_last=lambda: events.append("refresh"))
    assert events == ["written"] * (cuda_measure.ESTIMATE_RUNS + 19) + ["refresh", "nan"]


def test_a_trial_on_cached_inputs_measures_as_one_drawing_them() -> None:
    """The default attention problem, one config, measured as a study's later trials are (the
    cache warm) and as every trial was before (drawn and referenced anew): the same verdict and
    errors; the seconds per trial of each are printed (what the cache saves), not asserted."""
    spec = find_spec("attention", ARCH, "mma_sync")
    problem = spec.default_problem()
    config = {"block_m": 128, "block_n": 64, "warps": 4, "stages": 3, "precision": "exact", "rescale": "always",
              "occupancy": 8}
    measured(spec, config, problem, policy=TimingPolicy())  # compiled, loaded and warm
    walls: dict[str, list[float]] = {"cached": [], "drawn": []}
    results = []
    for number in range(8):
        kind = "drawn" if number % 2 else "cached"
        if kind == "drawn":
            cuda_measure.drop_measurement_inputs()
        start = time.perf_counter()
        results.append(measured(spec, config, problem, policy=TimingPolicy(), number=number))
        walls[kind].append(time.perf_counter() - start)
    assert all(r.status is Status.OK for r in results), [r.reason for r in results]
    cached, drawn = statistics.median(walls["cached"]), statistics.median(walls["drawn"])
    repeats = statistics.median(r.timing.repeats for r in results)
    kernel_s = statistics.median(r.timing.median_s for r in results)
    print(f"\nper trial: cached {cached * 1e3:.1f} ms, drawn {drawn * 1e3:.1f} ms (saves "
          f"{(drawn - cached) * 1e3:.1f} ms); {repeats} timed repeats of {kernel_s * 1e6:.1f} us")
    assert len({(r.rel_l2, r.max_abs) for r in results}) == 1  # one study's seed: one draw, whoever drew it


def test_the_error_metrics_agree_with_float64_ones() -> None:
    """The attention output's errors against its fp32 reference, as before (float64 copies) and now
    (the seconds of each printed, not asserted)."""
    import torch

    generator = torch.Generator(device="cuda").manual_seed(0)
    ref = torch.randn(16, 96, 512, 64, generator=generator, device="cuda")
    out = (ref + 1e-3 * torch.randn(ref.shape, generator=generator, device="cuda")).half()

    def float64() -> tuple[float, float]:
        diff = out.double() - ref.double()
        return float(torch.linalg.vector_norm(diff)) / float(torch.linalg.vector_norm(ref.double())), \
            float(diff.abs().max())

    norm = float(torch.linalg.vector_norm(ref.double()))
    seconds = {}
    for name, metric in (("float64", float64), ("now", lambda: cuda_measure.error_metrics(out, ref, norm))):
        metric()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            value = metric()
        seconds[name] = (time.perf_counter() - start) / 5
        if name == "float64":
            expected = value
    assert value[0] == pytest.approx(expected[0], rel=1e-5) and value[1] == pytest.approx(expected[1], rel=1e-6)
    assert math.isfinite(value[0])
    print(f"\nerror metrics of a [16,96,512,64] output: float64 {seconds['float64'] * 1e3:.2f} ms, "
          f"now {seconds['now'] * 1e3:.2f} ms")
