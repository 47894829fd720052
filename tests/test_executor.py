"""The executor seam without Ray: artifacts that travel between machines, failures as data."""

from __future__ import annotations

from tuner.kernel_templates import Target, find_spec
from tuner.workers import Job, SpecRef, Status, TimingPolicy
from tuner.workers.executor import compile_job, measure_job

SPEC = find_spec("attention", "cpu")
PROBLEM = {**SPEC.default_problem(), "S": 64, "H": 1}
CONFIG = {"block_m": 16, "block_n": 16, "unroll": 2, "threads": 1, "accum": "float", "exp": "libm",
          "fast_math": False, "march": "generic"}


def job(source) -> Job:
    return Job(trial_id=0, spec=SpecRef("attention", "cpu"), config=CONFIG, problem=PROBLEM,
               target=Target.documented("cpu"), source=source, seed=1)


def test_an_artifact_compiled_on_another_machine_is_measured_here(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "compiling-node"))
    source = SPEC.render(CONFIG, PROBLEM)
    artifact = compile_job(job(source), portable=True)
    assert artifact.binary and artifact.path.startswith(str(tmp_path / "compiling-node"))
    (tmp_path / "compiling-node").rename(tmp_path / "gone")  # the measuring node has its own disk
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path / "measuring-node"))
    measurement = measure_job(job(source), artifact, TimingPolicy(budget_s=0.01, min_repeats=3))
    assert measurement.status is Status.OK, measurement.reason
    assert list((tmp_path / "measuring-node").rglob("*.so"))


def test_a_compile_error_is_a_measurement_not_an_exception():
    source = SPEC.render(CONFIG, PROBLEM)
    broken = source.__class__(**{**source.__dict__, "code": source.code + "\nthis is not C;\n"})
    measurement = measure_job(job(broken), compile_job(job(broken)), TimingPolicy())
    assert measurement.status is Status.COMPILE_ERROR and "error" in measurement.log


def test_problem_sizes_that_render_the_same_code_share_one_compile():
    a = SPEC.render(CONFIG, PROBLEM)
    b = SPEC.render(CONFIG, {**PROBLEM, "S": 96, "B": 3})
    assert a.code_digest() == b.code_digest() and a.digest() != b.digest()
    first = compile_job(job(a))
    assert compile_job(job(b)).path == first.path
