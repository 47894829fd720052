"""The Ray executor's measuring actors with a job queued behind the one they measure (``depth``).

On a GPU each actor holds two jobs; the CPU backend holds one, but the executor takes any depth,
so these tests run the queued job's cases on the CPU backend with real Ray actors, real compiles
and the planted faults of kernel_templates/testing/faulty.c: a job queued behind one that
crashes, hangs or fails to launch is measured normally on a fresh actor, its retry unspent, and
a hang is blamed on the job that hung, on that job's own time. tests/gpu/test_ray_executor_cuda.py
checks the same on a GPU, and that the device does not wait for the driver there.

The jobs are compiled here and put on the compiled queue in a chosen order (compiles finish in
any order), so that each fault has a job queued behind it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import ray

from tuner.kernel_templates import Target, load_spec_file
from tuner.kernel_templates.testing import faulty_cpu
from tuner.workers import Job, Measurement, SpecRef, Status, TimingPolicy
from tuner.workers.executor import compile_job
from tuner.workers.ray_executor import RayExecutor

FAULTY = str(Path(faulty_cpu.__file__))
SPEC = load_spec_file(FAULTY)
PROBLEM = SPEC.validate_problem({"n": 256})
QUICK = TimingPolicy(warmup_s=0.005, budget_s=0.02, min_repeats=5)
CPU = Target.documented("cpu")


def job(trial: int, variant: str, **source_fields) -> Job:
    config = {"variant": variant}
    source = dataclasses.replace(SPEC.render(config, PROBLEM), **source_fields)
    return Job(trial_id=trial, spec=SpecRef(SPEC.name, "cpu", FAULTY), config=config, problem=PROBLEM,
               target=CPU, source=source, seed=0)


class Recording(RayExecutor):
    """The executor as it is, recording what it sends to which actor and when it collects."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[int, str, int, float]] = []  # trial, actor, jobs already on it, when
        self.collected: dict[int, float] = {}
        self.ran: dict[int, tuple[float, float]] = {}  # the measure call on the actor, as it timed it

    def _send(self, slot, job, artifact) -> None:
        self.sent.append((job.trial_id, slot.actor._actor_id.hex(), len(slot.jobs), time.monotonic()))
        super()._send(slot, job, artifact)

    def _collect(self, ref) -> None:
        running = next((s.running for s in self._slots if s.running and s.running.ref == ref), None)
        super()._collect(ref)
        if running is not None:
            self.collected[running.job.trial_id] = time.monotonic()
            if running.measured is not None:
                self.ran[running.job.trial_id] = (running.measured.started, running.measured.ended)

    def actors(self, trial: int) -> list[str]:
        return [actor for t, actor, _, _ in self.sent if t == trial]

    def positions(self, trial: int) -> list[int]:
        return [ahead for t, _, ahead, _ in self.sent if t == trial]


@pytest.fixture
def executor(ray_session):
    made: list[RayExecutor] = []

    def make(depth: int = 2, policy: TimingPolicy = QUICK, trial_timeout_s: float = 3.0, **kwargs) -> Recording:
        made.append(Recording(policy, trial_timeout_s=trial_timeout_s, depth=depth, **kwargs))
        made[-1].start(CPU)
        return made[-1]

    yield make
    for each in made:
        each.close()


def measure_in_order(executor: RayExecutor, jobs: list[Job]) -> dict[int, Measurement]:
    executor._q.compiled.extend((j, compile_job(j, portable=True)) for j in jobs)
    results = {}
    while (measurement := executor.next_result()) is not None:
        results[measurement.trial_id] = measurement
    assert sorted(results) == sorted(j.trial_id for j in jobs)
    return results


def test_the_cpu_backend_holds_one_job_per_actor_unless_told(ray_session):
    for depth, expected in ((None, 1), (2, 2)):
        executor = RayExecutor(QUICK, trial_timeout_s=3, depth=depth)
        try:
            executor.start(CPU)
            assert executor._depth == expected
        finally:
            executor.close()
    with pytest.raises(ValueError, match="depth"):
        RayExecutor(QUICK, trial_timeout_s=3, depth=0)


def test_both_jobs_go_to_the_actor_at_once_and_are_measured_in_order(executor):
    ex = executor(depth=2)
    results = measure_in_order(ex, [job(0, "unroll4"), job(1, "loop")])
    assert all(m.status is Status.OK for m in results.values()), results
    assert [(t, ahead) for t, _, ahead, _ in ex.sent] == [(0, 0), (1, 1)]  # no round trip between them
    assert ex.ran[0][1] <= ex.ran[1][0], "one after the other, never beside it"
    assert ex.collected[0] <= ex.collected[1]


def test_a_crash_of_the_job_measured_leaves_the_job_queued_behind_it_measured(executor):
    """The crashing job has its one retry (and crashes again); the healthy job queued behind it
    each time is sent again, to the next fresh actor, and measured there, never blamed."""
    ex = executor(depth=2)
    results = measure_in_order(ex, [job(0, "oob_write"), job(1, "unroll4")])
    assert results[0].status is Status.CRASHED and "twice" in results[0].reason, results[0].reason
    assert results[1].status is Status.OK, results[1].reason
    assert ex._retried == {0}, "the queued job's retry is unspent"
    assert ex.positions(0) == [0, 0] and ex.positions(1) == [1, 1, 0]
    assert len(set(ex.actors(1))) == 3 and ex.actors(1)[:2] == ex.actors(0)  # a fresh actor each time
    assert ex.actors(1)[-1] == ex._slots[0].actor._actor_id.hex()


def test_a_crash_of_the_queued_job_is_its_own(executor):
    """The job ahead ends normally; the queued one then crashes its actor and has its retry."""
    ex = executor(depth=2)
    results = measure_in_order(ex, [job(0, "unroll4"), job(1, "oob_write"), job(2, "loop")])
    assert results[0].status is Status.OK and results[2].status is Status.OK, results
    assert results[1].status is Status.CRASHED and "twice" in results[1].reason
    assert ex._retried == {1}


def test_a_hang_is_blamed_on_the_job_measured_not_on_the_one_queued_behind_it(executor):
    ex = executor(depth=2, trial_timeout_s=2.0)
    results = measure_in_order(ex, [job(0, "endless_loop"), job(1, "unroll4")])
    assert results[0].status is Status.TIMEOUT and "no result after" in results[0].reason
    assert results[1].status is Status.OK, results[1].reason
    assert ex._retried == set() and ex.positions(1) == [1, 0]
    assert ex.actors(1)[0] == ex.actors(0)[0] != ex.actors(1)[1] == ex._slots[0].actor._actor_id.hex()


def test_a_queued_job_is_timed_from_when_it_starts(executor):
    """Three jobs on one actor at once, the last one hanging: each healthy job's time (the slowest,
    from which the hang timeout grows) is its own, not the time since it was sent, and the hang
    clock of the job that hangs starts once the job ahead of it is collected."""
    slow = TimingPolicy(warmup_s=0.01, budget_s=0.8, min_repeats=5, max_repeats=1_000_000)
    ex = executor(depth=3, policy=slow, trial_timeout_s=4.0)  # 5x a healthy job's 0.8 s: room on a busy machine
    ex.HANG_FACTOR = 1.0  # the timeout stays at its floor, above either healthy job's time
    results = measure_in_order(ex, [job(0, "unroll4"), job(1, "unroll4"), job(2, "endless_loop")])
    ended = time.monotonic()
    assert results[0].status is Status.OK and results[1].status is Status.OK, results
    assert results[2].status is Status.TIMEOUT and "no result after" in results[2].reason, results[2].reason
    assert ex.positions(2) == [2], "sent once, with the others"
    sent = {trial: at for trial, _, _, at in ex.sent}
    since_sent = ex.collected[1] - sent[1]  # its wait behind job 0 (as long as its own), then its own time
    assert 0.3 <= ex._slowest_s < 0.8 * since_sent, (ex._slowest_s, since_sent)
    # a clock started when it was sent would have timed it out ~1.6 s (two healthy jobs) sooner
    assert ended - ex.collected[1] >= 3.95, "the hang clock started when the job ahead was collected"


def test_a_launch_error_sends_the_queued_job_to_a_fresh_actor(executor):
    """A launch error replaces its actor (on a GPU its context is poisoned): the job queued on
    the old actor is measured on the new one."""
    ex = executor(depth=2)
    results = measure_in_order(ex, [job(0, "unroll4", entry="no_such_function"), job(1, "loop")])
    assert results[0].status is Status.LAUNCH_ERROR and "no_such_function" in results[0].reason
    assert results[1].status is Status.OK, results[1].reason
    assert ex._retried == set() and ex.positions(1) == [1, 0]
    assert ex.actors(1)[0] == ex.actors(0)[0] != ex.actors(1)[1] == ex._slots[0].actor._actor_id.hex()


def test_every_idle_actor_gets_a_job_before_any_gets_a_second(executor):
    """Two actors (one CPU each: the compiles ran here), depth 2, three jobs."""
    ex = executor(depth=2, devices=2)
    assert len(ex._slots) == 2
    results = measure_in_order(ex, [job(0, "unroll4"), job(1, "loop"), job(2, "unroll2")])
    assert all(m.status is Status.OK for m in results.values()), results
    first, second = ex.sent[0][1], ex.sent[1][1]
    assert first != second and [ahead for _, _, ahead, _ in ex.sent] == [0, 0, 1]


class Overlapping(Recording):
    """The CPU backend measured as a GPU is: compiles beside measurements, results as they land."""

    @property
    def exclusive(self) -> bool:
        return False


def test_on_a_gpu_submit_hands_the_finished_compiles_to_the_devices(ray_session):
    """While the driver proposes a batch, each submit collects the compiles and measurements that
    finished and sends the next jobs: once the first job's compile is done (waited for here, not
    slept for, so a busy machine only makes it later), the next submit sends it to a device before
    the driver ever asks for a result."""
    ex = Overlapping(QUICK, trial_timeout_s=5.0, depth=2)
    try:
        ex.start(CPU)
        jobs = [job(trial, variant) for trial, variant in enumerate(["unroll4", "loop", "unroll2", "unroll8"] * 3)]
        ex.submit(jobs[0])
        ray.wait(list(ex._q.compiling), num_returns=len(ex._q.compiling))  # job 0's compile is done
        assert not ex.sent
        ex.submit(jobs[1])
        assert [trial for trial, *_ in ex.sent] == [0], "the second submit sent the compiled first job"
        for submitted in jobs[2:]:
            ex.submit(submitted)
        results = {}
        while (measurement := ex.next_result()) is not None:
            results[measurement.trial_id] = measurement
        assert sorted(results) == list(range(len(jobs)))
        assert all(m.status is Status.OK for m in results.values()), results
    finally:
        ex.close()


def test_without_dispatch_on_submit_only_next_result_sends_jobs(ray_session):
    ex = Overlapping(QUICK, trial_timeout_s=5.0, depth=2)
    ex.DISPATCH_ON_SUBMIT = False
    try:
        ex.start(CPU)
        for trial in range(2):
            ex.submit(job(trial, "unroll4"))
            time.sleep(0.5)
        assert ex.sent == []
        assert ex.next_result() is not None and ex.sent
    finally:
        ex.close()


class WatchingStarts(Overlapping):
    """Records, for every actor started and every actor death seen, whether submit's turn saw it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.started_in_submit: list[bool] = []
        self.died_in_submit: list[bool] = []

    def _add_slot(self) -> None:
        self.started_in_submit.append(getattr(self, "_polling", False))
        super()._add_slot()

    def _actor_died(self, slot, running, exc) -> None:
        self.died_in_submit.append(self._polling)
        super()._actor_died(slot, running, exc)


def test_a_crash_seen_by_submit_is_replaced_by_next_result(ray_session):
    """Submit never waits for an actor to start: a crash it collects leaves the fresh actor to the
    next next_result; the crashing job still has its retry there and the others are measured."""
    ex = WatchingStarts(QUICK, trial_timeout_s=5.0, depth=2)
    try:
        ex.start(CPU)
        jobs = [job(0, "oob_write")] + [job(trial, "unroll4") for trial in range(1, 8)]
        ex.submit(jobs[0])
        ray.wait(list(ex._q.compiling), num_returns=len(ex._q.compiling))  # compiled
        ex.submit(jobs[1])  # sends job 0 to the actor
        ray.wait([ex._slots[0].running.ref])  # its crash has landed (waited for, not slept for)
        for submitted in jobs[2:]:
            ex.submit(submitted)
        assert True in ex.died_in_submit, "the crash was collected within submit"
        results = {}
        while (measurement := ex.next_result()) is not None:
            results[measurement.trial_id] = measurement
        assert results[0].status is Status.CRASHED and "twice" in results[0].reason, results[0].reason
        assert all(results[trial].status is Status.OK for trial in range(1, 8)), results
        assert ex._retried == {0} and not any(ex.started_in_submit) and len(ex.started_in_submit) >= 2
    finally:
        ex.close()
