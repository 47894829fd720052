"""The Ray executor on a GPU, each measuring actor holding a second job behind the one it measures
(workers/ray_executor.py): the GPU goes from one measurement to the next while the driver is away,
and a job queued behind a launch error (whose CUDA context is poisoned) or a hang is measured on
a fresh actor, never blamed. tests/test_ray_executor.py checks the queue's cases on the CPU backend."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.test_ray_executor import Recording
from tuner.kernel_templates import Target, load_spec_file
from tuner.kernel_templates.testing import faulty_cuda
from tuner.workers import Job, Measurement, SpecRef, Status, TimingPolicy
from tuner.workers.cuda_runtime import gpu_count
from tuner.workers.executor import compile_job

pytestmark = pytest.mark.gpu

FAULTY = str(Path(faulty_cuda.__file__))
SPEC = load_spec_file(FAULTY)
PROBLEM = SPEC.validate_problem({"n": 1 << 22})
TARGET = Target.documented("sm_90a")


@pytest.fixture(scope="module", autouse=True)
def _gpu() -> None:
    require(gpu_count() > 0, "no CUDA GPU here: run bench/gpu_check.sh on a GPU machine")


def job(trial: int, variant: str) -> Job:
    config = {"variant": variant}
    return Job(trial_id=trial, spec=SpecRef(SPEC.name, "cuda", FAULTY), config=config, problem=PROBLEM,
               target=TARGET, source=SPEC.render(config, PROBLEM), seed=0)


def queue_compiled(executor: Recording, jobs: list[Job]) -> None:
    """Compiled here and queued in this order (compiles would finish in any order)."""
    executor._q.compiled.extend((j, compile_job(j, portable=True)) for j in jobs)


@pytest.fixture
def executor(ray_session):
    made: list[Recording] = []

    def make(**kwargs) -> Recording:
        made.append(Recording(TimingPolicy(), trial_timeout_s=3.0, devices=1, **kwargs))
        made[-1].start(TARGET)
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_the_job_queued_behind_a_launch_error_or_a_hang_is_measured_on_a_fresh_actor(executor):
    ex = executor()
    assert ex._depth == 2, "two jobs per GPU by default"
    jobs = [job(0, "block256"), job(1, "oob_write"), job(2, "block128"), job(3, "endless_loop"), job(4, "block64")]
    queue_compiled(ex, jobs)
    results: dict[int, Measurement] = {}
    while (measurement := ex.next_result()) is not None:
        results[measurement.trial_id] = measurement
    statuses = {trial: m.status for trial, m in results.items()}
    assert statuses == {0: Status.OK, 1: Status.LAUNCH_ERROR, 2: Status.OK, 3: Status.TIMEOUT, 4: Status.OK}, \
        {trial: (m.status, m.reason) for trial, m in results.items()}
    assert ex._retried == set()
    # 2 was queued behind 1's launch error and 4 behind 3's hang: each sent again, first in line
    assert ex.positions(2) == [1, 0] and ex.positions(4) == [1, 0]
    assert ex.actors(2)[0] == ex.actors(1)[0] != ex.actors(2)[1] == ex.actors(3)[0]
    assert ex.actors(4)[0] == ex.actors(3)[0] != ex.actors(4)[1]


@pytest.mark.parametrize("depth", [1, 2])
def test_the_gpu_does_not_wait_for_a_driver_that_is_away(executor, depth):
    """Three healthy jobs; the driver is away for several measurements after the first result (as
    when it fits the sampler's model or stores a batch). At depth 2 the third job was sent with the
    second and starts the moment the second ends; at depth 1 it waits for the driver's return."""
    ex = executor(depth=depth)
    queue_compiled(ex, [job(0, "block256"), job(1, "block128"), job(2, "block512")])
    first = ex.next_result()
    assert first is not None and first.trial_id == 0 and first.status is Status.OK, first
    away_s = max(1.0, 5 * (ex.ran[0][1] - ex.ran[0][0]))
    time.sleep(away_s)
    rest = [ex.next_result(), ex.next_result()]
    assert all(m is not None and m.status is Status.OK for m in rest), rest
    assert ex.next_result() is None
    (_, end0), (start1, end1), (start2, _) = ex.ran[0], ex.ran[1], ex.ran[2]
    assert end0 <= start1 and end1 <= start2, "one measurement at a time"
    assert start1 - end0 < 0.05, "the second job is sent before the first result is handed over"
    gap = start2 - end1
    if depth == 2:
        assert gap < 0.02, f"the GPU waited {gap * 1000:.1f} ms between two queued jobs"
    else:
        assert gap > 0.5 * (away_s - (end1 - start1)), f"{gap:.3f} s: the driver's absence should show at depth 1"


def test_the_gpu_measures_while_the_driver_proposes_a_batch(executor):
    """A first batch of proposals, one every 0.3 s (slower than the sampler, so that the compile
    workers' start is behind us): the compiles that land are measured during the batch, not after
    the driver's first next_result."""
    ex = executor()
    variants = [v for v in faulty_cuda.VARIANTS if v not in faulty_cuda.FAULTY] * 2
    for trial, variant in enumerate(variants):
        ex.submit(job(trial, variant))
        time.sleep(0.3)
    asked = time.monotonic()
    assert ex.ran and min(start for start, _ in ex.ran.values()) < asked - 0.2, (ex.ran, asked)
    results = []
    while (measurement := ex.next_result()) is not None:
        results.append(measurement)
    assert sorted(m.trial_id for m in results) == list(range(len(variants)))
    assert all(m.status is Status.OK for m in results), [(m.trial_id, m.status, m.reason) for m in results]
