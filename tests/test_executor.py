"""The executor seam without Ray: artifacts that travel between machines, failures as data."""

from __future__ import annotations

import itertools
import threading

from tests.conftest import require
from tuner.kernel_templates import Target, find_spec
from tuner.workers import Job, SpecRef, Status, TimingPolicy, nvrtc
from tuner.workers import executor as executor_module
from tuner.workers.executor import LocalExecutor, compile_job, measure_job

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


def cuda_job(trial_id: int, config: dict) -> Job:
    spec, target = find_spec("attention", "sm_90a", "mma_sync"), Target.documented("sm_90a")
    problem = {**spec.default_problem(), "S": 128, "H": 1}
    return Job(trial_id=trial_id, spec=SpecRef("attention", "sm_90a"), config=config, problem=problem,
               target=target, source=spec.render(config, problem), seed=1)


def test_the_local_executor_compiles_cuda_jobs_ahead_and_measures_them_in_order(tmp_path, monkeypatch):
    """Real NVRTC compiles on the executor's threads; the measurement (the GPU's part, absent here)
    is recorded instead of run, and sees each job's own artifact in submission order."""
    require(nvrtc.available(), "NVRTC is not installed (pip install 'tuner[nvrtc]')")
    monkeypatch.setenv("TUNER_CACHE_DIR", str(tmp_path))
    spec = find_spec("attention", "sm_90a", "mma_sync")
    names, device = [p.name for p in spec.params], Target.documented("sm_90a")
    every = (dict(zip(names, values, strict=True)) for values in itertools.product(*(p.choices for p in spec.params)))
    configs = [c for c in every if spec.check(c, cuda_job(0, c).problem, device) is None]
    compiled_on, measured = [], []

    def compile_on_thread(job, portable=False):
        compiled_on.append(threading.current_thread().name)
        return compile_job(job, portable)

    monkeypatch.setattr(executor_module, "compile_job", compile_on_thread)
    monkeypatch.setattr(executor_module, "measure_job",
                        lambda job, artifact, policy: measured.append((job.trial_id, artifact)) or job.trial_id)
    executor = LocalExecutor(TimingPolicy(), compile_workers=2)
    executor.start(Target.documented("sm_90a"))
    assert executor.capacity == 4
    jobs = [cuda_job(i, config) for i, config in enumerate(configs[:3])]
    for submitted in jobs:
        executor.submit(submitted)
    assert [executor.next_result() for _ in jobs] == [0, 1, 2] and executor.next_result() is None
    assert all(name.startswith("compile") for name in compiled_on) and len(compiled_on) == 3
    assert [a.source_hash for _, a in measured] == [j.source.digest() for j in jobs]
    assert all(a.error is None and a.path for _, a in measured)
    executor.close()


def test_the_local_executor_compiles_a_cpu_job_only_when_it_measures_it(monkeypatch):
    """No compile competes with a timed run for the CPU backend's cores."""
    compiled = []
    monkeypatch.setattr(executor_module, "compile_job", lambda job, portable=False: compiled.append(job) or "built")
    monkeypatch.setattr(executor_module, "measure_job", lambda job, artifact, policy: (len(compiled), artifact))
    executor = LocalExecutor(TimingPolicy())
    executor.start(Target.documented("cpu"))
    source = SPEC.render(CONFIG, PROBLEM)
    executor.submit(job(source))
    executor.submit(job(source))
    assert executor.capacity == 1 and compiled == []
    assert executor.next_result() == (1, "built") and executor.next_result() == (2, "built")
