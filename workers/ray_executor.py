"""Ray executor: compilation as parallel CPU tasks, measurement on one actor per device.

The measuring actor holds the device (its context and loaded modules) and is given one job at a
time, so timings never overlap and a crash or hang costs exactly one trial: the actor's process
is thrown away (a CUDA context is poisoned after a fault) and a fresh one takes its place.

On a GPU, compiles overlap measurement. On the CPU backend the device *is* the CPUs, so the
executor alternates: a batch of parallel compiles, then measurements with no compile running,
so that a compiler never steals cycles from a timed kernel.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from dataclasses import dataclass

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError

from .backend import TimingPolicy
from .executor import Executor, Target, compile_job, describe, failed, measure_job
from .measurement import Artifact, Job, Measurement, Status


@ray.remote
def _compile_task(backend_name: str, job: Job) -> Artifact:
    return compile_job(backend_name, job)


@ray.remote(max_restarts=0)
class MeasuringActor:
    def __init__(self, backend_name: str):
        self._backend = backend_name

    def describe(self, arch: str) -> Target:
        return describe(self._backend, arch)

    def measure(self, job: Job, artifact: Artifact, policy: TimingPolicy) -> Measurement:
        return measure_job(self._backend, job, artifact, policy)


@dataclass
class _Running:
    job: Job
    ref: ray.ObjectRef
    started: float


def init_ray(address: str | None) -> None:
    """Joins ``address`` (a running cluster) or starts a local Ray sized to this machine."""
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, **kwargs)


class RayExecutor(Executor):
    # A measurement may take this many times the slowest healthy one before it counts as hung.
    HANG_FACTOR = 5.0

    def __init__(self, policy: TimingPolicy, trial_timeout_s: float, address: str | None = None):
        """``trial_timeout_s`` is the floor of the hang timeout; it grows with the slowest
        healthy measurement seen, so a slow-but-sound kernel is never mistaken for a hang."""
        init_ray(address)
        self._policy = policy
        self._floor_s = trial_timeout_s
        self._slowest_s = 0.0
        self._pending: collections.deque[Job] = collections.deque()
        self._compiling: dict[ray.ObjectRef, Job] = {}
        self._compiled: collections.deque[tuple[Job, Artifact]] = collections.deque()
        self._running: _Running | None = None
        self._done: collections.deque[Measurement] = collections.deque()
        self._actor = None
        self._backend = ""
        self._arch = ""
        self._compile_slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.capacity = 2 * self._compile_slots  # enough compiles queued to keep the device busy
        self._exclusive = False

    def start(self, backend_name: str, arch: str) -> Target:
        self._backend, self._arch = backend_name, arch
        self._exclusive = backend_name == "cpu"
        return self._new_actor()

    def _new_actor(self) -> Target:
        options = {"num_gpus": 1, "num_cpus": 0} if self._backend == "cuda" else {"num_cpus": 1}
        self._actor = MeasuringActor.options(**options).remote(self._backend)
        return ray.get(self._actor.describe.remote(self._arch))

    def _replace_actor(self) -> None:
        ray.kill(self._actor, no_restart=True)
        self._new_actor()

    def submit(self, job: Job) -> None:
        self._pending.append(job)

    def _launch_compiles(self) -> None:
        if self._exclusive and (self._running or self._compiled):
            return
        while self._pending and len(self._compiling) < self._compile_slots:
            job = self._pending.popleft()
            self._compiling[_compile_task.options(num_cpus=1).remote(self._backend, job)] = job

    def next_result(self, timeout: float | None = None) -> Measurement | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done:
            self._launch_compiles()
            self._dispatch()
            refs = list(self._compiling) + ([self._running.ref] if self._running else [])
            if not refs:
                return None
            wait_s = self._wait_budget(deadline)
            ready, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
            if ready:
                self._collect(ready[0])
            elif self._running and time.monotonic() - self._running.started > self._timeout_s():
                self._time_out()
            elif deadline is not None and time.monotonic() >= deadline:
                return None
        return self._done.popleft()

    def _wait_budget(self, deadline: float | None) -> float:
        limits = [1.0]
        if self._running:
            limits.append(max(0.0, self._running.started + self._timeout_s() - time.monotonic()))
        if deadline is not None:
            limits.append(max(0.0, deadline - time.monotonic()))
        return min(limits)

    def _timeout_s(self) -> float:
        return max(self._floor_s, self.HANG_FACTOR * self._slowest_s)

    def _dispatch(self) -> None:
        if self._exclusive and self._compiling:
            return
        while self._running is None and self._compiled:
            job, artifact = self._compiled.popleft()
            if artifact.error is not None:  # no need to bother the device
                self._done.append(measure_job(self._backend, job, artifact, self._policy))
                continue
            ref = self._actor.measure.remote(job, artifact, self._policy)
            self._running = _Running(job, ref, time.monotonic())

    def _collect(self, ref: ray.ObjectRef) -> None:
        if ref in self._compiling:
            job = self._compiling.pop(ref)
            try:
                self._compiled.append((job, ray.get(ref)))
            except RayError as exc:
                self._done.append(failed(job, Status.CRASHED, f"compile worker died: {exc}"))
            return
        job, started = self._running.job, self._running.started
        self._running = None
        try:
            measurement = ray.get(ref)
            if measurement.status is Status.OK:
                self._slowest_s = max(self._slowest_s, time.monotonic() - started)
            elif measurement.status is Status.LAUNCH_ERROR:
                self._replace_actor()  # a faulting kernel poisons the CUDA context it ran in
            self._done.append(measurement)
        except RayActorError as exc:
            self._done.append(failed(job, Status.CRASHED, f"the measuring process died: {exc}"))
            self._new_actor()
        except RayTaskError as exc:
            self._done.append(failed(job, Status.CRASHED, f"measuring raised: {exc}"))

    def _time_out(self) -> None:
        job = self._running.job
        self._running = None
        self._done.append(failed(job, Status.TIMEOUT,
                                 f"no result after {self._timeout_s():.1f} s: the kernel hung or is far "
                                 "too slow; its process was replaced"))
        self._replace_actor()

    def close(self) -> None:
        if self._actor is not None:
            ray.kill(self._actor, no_restart=True)
            self._actor = None
        for ref in self._compiling:
            ray.cancel(ref, force=True)
        self._compiling.clear()
        self._pending.clear()
