"""The CUDA measurement's pieces that need no GPU, on torch CPU tensors: the error metrics against
the float64 ones, the flush size and warm-up count, and the cache of a study's inputs and
references (its key, its own copies, its checks). tests/gpu/test_measure_cuda.py runs them on a GPU."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tuner.kernel_templates.families import Families
from tuner.kernel_templates.spec import KernelSpec, OutputSpec, ProblemParam, Source
from tuner.workers import cuda_measure
from tuner.workers.cuda_measure import (
    ESTIMATE_RUNS,
    L2_FLUSH_FALLBACK_BYTES,
    L2_FLUSH_MIN_BYTES,
    error_metrics,
    inputs_key,
    l2_flush_bytes,
    measurement_inputs,
    warmup_runs,
)
from tuner.workers.stats import error_metrics as error_metrics64

torch = pytest.importorskip("torch")


class Affine(KernelSpec):
    """y = 2x + 1 over a padded [rows, cols] view (as the GEMM's TMA operands are), on the CPU."""

    name = "affine"
    backend = "cuda"
    archs = ("sm_90a",)
    problem_params = (ProblemParam("rows", int, 8, minimum=1), ProblemParam("cols", int, 5, minimum=1))
    draws = 0  # make_inputs calls, counted across instances

    def render(self, config, problem):
        return Source("cuda", "", "affine")

    def make_inputs(self, problem, rng):
        type(self).draws += 1
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        padded = torch.randn(problem["rows"], problem["cols"] + 3, generator=generator)
        return {"x": padded[:, :problem["cols"]], "scale": torch.rand(1, generator=generator) + 0.5}

    def output_spec(self, problem):
        return OutputSpec((problem["rows"], problem["cols"]), "float32")

    def reference(self, inputs, problem):
        return 2.0 * inputs["x"].double() * inputs["scale"].double() + 1.0

    def flops(self, problem):
        return 2.0

    def bytes_moved(self, problem):
        return 8.0


class OtherFamily(Affine):
    family = "other"  # inherits both make_inputs and reference: one problem, one cache entry


class OwnInputs(Affine):
    family = "own"

    def make_inputs(self, problem, rng):
        return {name: -value for name, value in super().make_inputs(problem, rng).items()}


PROBLEM = {"rows": 8, "cols": 5}


@pytest.fixture(autouse=True)
def _empty_cache():
    cuda_measure.drop_measurement_inputs()
    yield
    cuda_measure.drop_measurement_inputs()


# ---- error metrics ----


def pair(dtype: Any, n: int = 1 << 16, seed: int = 0) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(seed)
    ref = torch.randn(n, generator=generator)
    out = (ref + 1e-3 * torch.randn(n, generator=generator)).to(dtype)
    return out, ref


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_error_metrics_agree_with_float64_ones(dtype: str) -> None:
    out, ref = pair(getattr(torch, dtype))
    ours = error_metrics(out, ref)
    theirs = error_metrics64(out.double().numpy(), ref.double().numpy())
    assert ours[0] == pytest.approx(theirs[0], rel=1e-5) and ours[1] == pytest.approx(theirs[1], rel=1e-6)
    given = error_metrics(out, ref, float(np.linalg.norm(ref.double().numpy())))
    assert given[0] == pytest.approx(ours[0], rel=1e-12) and given[1] == ours[1]


def test_error_metrics_of_a_float64_reference_and_of_integers_are_float64_ones() -> None:
    out, ref = pair(torch.float32)
    assert error_metrics(out, ref.double() + 1e-9) == pytest.approx(
        error_metrics64(out.double().numpy(), ref.double().numpy() + 1e-9), rel=1e-12)
    ints = torch.arange(-50, 50, dtype=torch.int32)
    assert error_metrics(ints, ints.long() + 1) == pytest.approx(
        error_metrics64(ints.numpy(), ints.numpy() + 1), rel=1e-12)


def test_an_output_with_nan_or_inf_has_infinite_errors_and_a_huge_finite_one_does_not() -> None:
    out, ref = pair(torch.float32)
    for bad in (math.nan, math.inf, -math.inf):
        spoiled = out.clone()
        spoiled[7] = bad
        assert error_metrics(spoiled, ref) == (math.inf, math.inf)
    huge = out.clone()
    huge[3] = 3e38  # finite, but its square overflows float32: computed again in float64
    rel, worst = error_metrics(huge, ref)
    assert math.isfinite(rel) and worst == pytest.approx(3e38, rel=1e-6)
    assert rel == pytest.approx(error_metrics64(huge.double().numpy(), ref.double().numpy())[0], rel=1e-9)
    assert error_metrics(out[:0], ref[:0]) == (0.0, 0.0)


# ---- the flush and the warm-up ----


def test_the_flush_is_tritons_256_mib_or_five_times_a_larger_l2() -> None:
    assert l2_flush_bytes(50 << 20) == 256 << 20 == L2_FLUSH_MIN_BYTES  # H100 and H200: 50 MiB
    assert l2_flush_bytes(126 << 20) == 5 * (126 << 20)  # a larger L2
    assert l2_flush_bytes(1 << 20) == L2_FLUSH_MIN_BYTES
    assert l2_flush_bytes(0) == l2_flush_bytes(None) == L2_FLUSH_FALLBACK_BYTES


def test_the_estimate_runs_count_toward_the_warm_up() -> None:
    assert warmup_runs(0.01, 0.0004) == 25 - ESTIMATE_RUNS
    assert warmup_runs(0.01, 0.02) == 0  # the estimate alone outlasts the warm-up


# ---- the cache of a study's inputs ----


def test_one_draw_serves_every_trial_of_a_problem_and_seed() -> None:
    spec, before = Affine(), Affine.draws
    first = measurement_inputs(spec, PROBLEM, 7)
    assert measurement_inputs(spec, dict(reversed(PROBLEM.items())), 7) is first  # the same problem
    assert Affine.draws == before + 2  # the first set and the second, once
    assert measurement_inputs(OtherFamily(), PROBLEM, 7) is first  # a family inheriting both methods
    for other in (measurement_inputs(spec, PROBLEM, 8), measurement_inputs(spec, {"rows": 8, "cols": 6}, 7),
                  measurement_inputs(OwnInputs(), PROBLEM, 7)):
        assert other is not first
    assert cuda_measure.cached_measurement_inputs() is not first  # one problem at a time


def test_the_sets_and_references_are_those_of_the_seed() -> None:
    spec = Affine()
    cached = measurement_inputs(spec, PROBLEM, 3)
    rng = np.random.default_rng(3)
    for drawn, kept, ref in zip((spec.make_inputs(PROBLEM, rng), spec.make_inputs(PROBLEM, rng)), cached.sets,
                                cached.references, strict=True):
        assert all(torch.equal(drawn[name], kept[name]) for name in drawn)
        assert torch.equal(spec.reference(drawn, PROBLEM), ref)
    assert cached.finite and cached.ref_norms[1] == pytest.approx(float(cached.references[1].norm()))
    assert cached.work["x"].stride() == (PROBLEM["cols"] + 3, 1)  # the kernel's buffers keep their layout
    assert all(not kept["x"].untyped_storage().data_ptr() == cached.work["x"].untyped_storage().data_ptr()
               for kept in cached.sets)


def test_a_kernel_writing_into_its_buffers_leaves_the_cache_as_it_was() -> None:
    cached = measurement_inputs(Affine(), PROBLEM, 1)
    cached.load(1)
    assert cached.changed(1, ["x", "scale"]) == [] and cached.changed(0, ["x"]) == ["x"]
    cached.work["x"][2, 1] += 1.0  # what a kernel writing into its input does
    assert cached.changed(1, ["x", "scale"]) == ["x"]
    assert cached.intact()  # its own copies were never given out
    cached.load(1)
    assert cached.changed(1, ["x", "scale"]) == []


def test_a_write_into_a_cached_set_or_reference_is_seen() -> None:
    for corrupt in (lambda c: c.references[0].view(-1)[5].add_(1e-9), lambda c: c.sets[1]["scale"].mul_(-1)):
        cached = measurement_inputs(Affine(), PROBLEM, 2)
        assert cached.intact()
        corrupt(cached)
        assert not cached.intact()
        cuda_measure.drop_measurement_inputs()


def test_bits_compare_so_an_untouched_nan_input_is_unchanged() -> None:
    cached = measurement_inputs(Affine(), PROBLEM, 4)
    cached.sets[0]["x"][0, 0] = math.nan  # a template may draw a NaN on purpose
    cached.load(0)
    assert cached.changed(0, ["x"]) == []


def test_families_draw_with_their_default_member() -> None:
    both = Families([Affine(), OwnInputs()])
    assert inputs_key(both, PROBLEM, 1) == inputs_key(Affine(), PROBLEM, 1)
    assert inputs_key(Families([OwnInputs(), Affine()]), PROBLEM, 1) == inputs_key(OwnInputs(), PROBLEM, 1)


def test_a_non_finite_reference_is_reported_not_normed() -> None:
    class Broken(Affine):
        def reference(self, inputs, problem):
            return torch.full(inputs["x"].shape, math.inf)

    cached = measurement_inputs(Broken(), PROBLEM, 1)
    assert not cached.finite and all(math.isnan(norm) for norm in cached.ref_norms)
