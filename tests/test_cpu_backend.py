"""The CPU worker with the real C compiler: compile errors, the disk cache, poisoning and the
second input set that catch kernels that skip work, load failures, and the example template."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require
from tuner.kernel_templates import KernelSpec, OutputSpec, Param, Problem, ProblemParam, Source, Target, load_spec_file
from tuner.workers import Job, SpecRef, Status, TimingPolicy, get_backend

BACKEND = get_backend("cpu")
CPU = Target.documented("cpu")
QUICK = TimingPolicy(warmup_s=0.001, budget_s=0.005, min_repeats=5, flush_l2=False)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "softmax_spec.py"

SIGNATURE = "void scale2(const float *x, float *out, int64_t n)"
KERNELS = {
    "correct": "{ for (int64_t i = 0; i < n; i++) out[i] = 2.0f * x[i]; }",
    "writes_nothing": "{ (void)x; (void)out; (void)n; }",
    "first_call_only": "{ static int calls; if (calls++ == 0) for (int64_t i = 0; i < n; i++) out[i] = 2.0f * x[i]; }",
    # computes once, then replays that answer: right for the first input set, wrong for the second
    "replays_first_result": """{
        static float saved[4096]; static int calls;
        if (calls++ == 0) for (int64_t i = 0; i < n; i++) saved[i] = 2.0f * x[i];
        for (int64_t i = 0; i < n; i++) out[i] = saved[i]; }""",
    "broken": "{ for (int64_t i = 0; i < n; i++) out[i] = 2.0f * x[i] }",
}


class Scale2(KernelSpec):
    """out = 2 x, one hand-written C body per ``kernel`` choice."""

    name = "scale2"
    params = (Param("kernel", tuple(KERNELS)),)
    problem_params = (ProblemParam("n", int, 1000, minimum=1),)

    def render(self, config, problem: Problem) -> Source:
        code = f"#include <stdint.h>\n{SIGNATURE}\n{KERNELS[config['kernel']]}\n"
        return Source("c", code, "scale2", options=("-O2",), scalars=(("int64", problem["n"]),))

    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        return {"x": rng.standard_normal(problem["n"], dtype=np.float32)}

    def output_spec(self, problem: Problem) -> OutputSpec:
        return OutputSpec((problem["n"],), "float32")

    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> np.ndarray:
        return 2.0 * inputs["x"].astype(np.float64)

    def flops(self, problem: Problem) -> float:
        return float(problem["n"])

    def bytes_moved(self, problem: Problem) -> float:
        return 8.0 * problem["n"]


SPEC = Scale2()


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    require(shutil.which("cc") is not None, "no C compiler `cc` on PATH")
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "cache"))


def run(kernel: str, policy: TimingPolicy = QUICK, source: Source | None = None):
    config, problem = {"kernel": kernel}, SPEC.default_problem()
    source = source or SPEC.render(config, problem)
    job = Job(7, SpecRef("scale2", "cpu", "tests/test_cpu_backend.py"), config, problem, CPU, source, seed=3)
    return BACKEND.measure(job, BACKEND.compile(source, CPU), SPEC, policy)


def test_correct_kernel_is_ok_with_quantiles():
    result = run("correct")
    assert result.status is Status.OK, result.reason
    assert result.rel_l2 == 0.0 and result.max_abs == 0.0
    timing = result.timing
    assert QUICK.min_repeats <= timing.repeats <= QUICK.max_repeats
    assert timing.min_s <= timing.q1_s <= timing.median_s <= timing.q3_s <= timing.max_s
    assert result.environment["compiler"] == BACKEND.compiler_version()
    assert result.resources["so_bytes"] > 0


@pytest.mark.parametrize("kernel", ["writes_nothing", "first_call_only"])
def test_poisoned_output_catches_kernels_that_skip_work(kernel):
    result = run(kernel)
    assert result.status is Status.WRONG_RESULT
    assert result.rel_l2 == float("inf") and "NaN" in result.reason


def test_second_input_set_catches_a_kernel_that_replays_its_first_answer():
    result = run("replays_first_result")
    assert result.status is Status.WRONG_RESULT
    assert np.isfinite(result.rel_l2) and "exceeds the template's bound" in result.reason


def test_broken_source_is_a_compile_error_with_the_compiler_message():
    source = SPEC.render({"kernel": "broken"}, SPEC.default_problem())
    artifact = BACKEND.compile(source, CPU)
    assert artifact.path is None and "error" in artifact.error and "expected" in artifact.error
    result = run("broken")
    assert result.status is Status.COMPILE_ERROR
    assert result.reason.startswith("compile failed:") and "expected" in result.log


def test_second_compile_is_served_from_the_cache():
    source = SPEC.render({"kernel": "correct"}, SPEC.default_problem())
    first, second = BACKEND.compile(source, CPU), BACKEND.compile(source, CPU)
    assert not first.cached and first.compile_time_s > 0
    assert second.cached and second.path == first.path and second.source_hash == first.source_hash
    assert second.compile_time_s == first.compile_time_s  # what the variant cost, stored with it
    other = BACKEND.compile(Source("c", source.code, "scale2", options=("-O1",)), CPU)
    assert other.path != first.path


def test_native_builds_are_keyed_by_the_host_cpu():
    source = SPEC.render({"kernel": "correct"}, SPEC.default_problem())
    native = Source("c", source.code, "scale2", options=("-O2", "-march=native"))
    assert BACKEND.compile(native, CPU).path != BACKEND.compile(source, CPU).path


def test_missing_entry_point_is_a_launch_error():
    good = SPEC.render({"kernel": "correct"}, SPEC.default_problem())
    result = run("correct", source=Source("c", good.code, "no_such_function", scalars=good.scalars))
    assert result.status is Status.LAUNCH_ERROR and "no_such_function" in result.reason


def test_missing_compiler_is_a_compile_error_that_says_what_to_do(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    result = run("correct")
    assert result.status is Status.COMPILE_ERROR and "set CC" in result.reason


def test_cache_flush_policy_still_verifies():
    result = run("correct", TimingPolicy(warmup_s=0.001, budget_s=0.002, min_repeats=3, flush_l2=True))
    assert result.status is Status.OK and result.timing.repeats >= 3


def test_device_and_environment_describe_this_machine():
    device = BACKEND.device(CPU)
    assert device.arch == "cpu" and device.name and device.limits["cores"] == os.cpu_count()
    env = BACKEND.environment()
    assert env["cpu_count"] == os.cpu_count() and env["numpy"] == np.__version__
    version_line = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    assert env["compiler"] == version_line.strip()


@pytest.mark.parametrize("config", [dict(unroll=1, threads=1, fast_math=False),
                                    dict(unroll=8, threads=2, fast_math=True)])
def test_example_template_tunes(config):
    spec = load_spec_file(str(EXAMPLE))
    problem = spec.validate_problem({"rows": 33, "cols": 257})
    source = spec.render(config, problem)
    job = Job(1, SpecRef(spec.name, "cpu", str(EXAMPLE)), config, problem, CPU, source, seed=5)
    result = BACKEND.measure(job, BACKEND.compile(source, CPU), spec, QUICK)
    assert result.status is Status.OK, result.reason
    assert result.rel_l2 < 1e-5


def test_a_fast_math_kernel_leaves_denormals_alone_in_its_process():
    """crtfastmath.o would turn on flush-to-zero for the measuring process and every later trial."""
    script = """
import ctypes, numpy as np
from tuner.kernel_templates import Source, Target
from tuner.workers import get_backend
source = Source("c", "void f(float *x) { x[0] *= 2.0f; }", "f", options=("-O3", "-ffast-math"))
artifact = get_backend("cpu").compile(source, Target.documented("cpu"))
assert artifact.error is None, artifact.error
ctypes.CDLL(artifact.path)
assert (np.array([1e-310]) * 1.0)[0] != 0.0, "denormals are flushed"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def mapped_kernels() -> set[str]:
    """The compile cache's shared objects mapped into this process now."""
    cache = os.environ["TUNER_CACHE_DIR"]
    return {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
            if cache in line and line.endswith(".so")}


def test_a_long_study_keeps_few_kernels_loaded_and_one_flush_buffer(monkeypatch):
    """The measuring process unloads old kernels and allocates its LLC-sized flush buffer once."""
    require(Path("/proc/self/maps").is_file(), "needs Linux's /proc/self/maps")
    from tuner.workers import cpu

    allocated = []

    class CountedFlusher(cpu._Flusher):
        def __init__(self) -> None:
            allocated.append(self)
            super().__init__()

    monkeypatch.setattr(cpu, "_Flusher", CountedFlusher)
    cpu._flusher.cache_clear()
    backend = cpu.CpuBackend()
    policy = TimingPolicy(warmup_s=0.001, budget_s=0.002, min_repeats=3, flush_l2=True)
    for variant in range(3 * cpu.CpuBackend.LOADED_MAX):
        code = f"#include <stdint.h>\n{SIGNATURE}\n{KERNELS['correct']}\n/* variant {variant} */\n"
        source = Source("c", code, "scale2", options=("-O2",), scalars=(("int64", 1000),))
        job = Job(variant, SpecRef("scale2", "cpu"), {"kernel": "correct"}, {"n": 1000}, CPU,
                  source, seed=variant)
        result = backend.measure(job, backend.compile(source, CPU), SPEC, policy)
        assert result.status is Status.OK, result.reason
        assert len(mapped_kernels()) <= cpu.CpuBackend.LOADED_MAX
    assert len(allocated) == 1
    cpu._flusher.cache_clear()  # the next test's process-wide buffer is the real class again


class NanReference(Scale2):
    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> np.ndarray:
        expected = super().reference(inputs, problem)
        expected[3] = np.nan
        return expected


def test_a_nan_reference_is_named_as_the_template_s_fault():
    source = SPEC.render({"kernel": "correct"}, SPEC.default_problem())
    job = Job(1, SpecRef("scale2", "cpu"), {"kernel": "correct"}, SPEC.default_problem(), CPU,
              source, seed=1)
    result = BACKEND.measure(job, BACKEND.compile(source, CPU), NanReference(), QUICK)
    assert result.status is Status.WRONG_RESULT
    assert "reference" in result.reason and "unwritten" not in result.reason
