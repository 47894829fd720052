"""Ray executor: compilation as parallel CPU tasks, measurement on one actor per device.

Each measuring actor holds one device (its context and loaded modules) and measures one job at a
time, so timings never overlap and a crash or hang costs one trial: the actor's process is thrown
away (a CUDA context is poisoned after a fault) and a fresh one takes its place. A job whose actor
died is tried once more on a fresh actor, which Ray may place on another node: a node that leaves
the cluster loses no trial, and a kernel that really crashes is confirmed by its second crash.

On a GPU each actor is also handed a second compiled job while its first runs (``depth``): Ray
runs an actor's calls one after another in the order they were sent, so the queued one starts
the moment the first ends, with no round trip through the driver, which may be busy storing a
result or fitting the sampler's model. A queued job is not blamed for what the job ahead of it
did: its hang clock starts when that job's result is collected, and when the actor is lost
(a crash, a hang, a lost node) or replaced (a launch error, which poisons the CUDA context the
queued job would run in) it goes back to the front of the compiled queue for the next free
device, its one retry unspent. An idle device is always served before any device gets a second
job, so a GPU that joins mid-run is not starved by the others' queues.

Actors are spread over the cluster's nodes; only devices of the first actor's kind are kept, so
a study never compares an H100 with an A100. For CUDA, a GPU that joins mid-run gets an actor.

On a GPU, compiles overlap measurement: a job's compile starts as it is submitted, on every core
(at a lower priority than the measuring process and the driver), and a device whose measurement
lands is handed the next compiled job before the driver stores the result, so the device waits
neither for storage nor for the sampler. Each ``submit`` also collects, without waiting, what has
finished and hands the free devices their next jobs, so that a batch of proposals (the first one
fills ``capacity``) does not hold the device up either.

On the CPU backend the device *is* the CPUs, so the executor alternates: a batch of parallel
compiles, then its measurements back to back with no compile running and the driver waiting (their
results are handed over once the batch is measured), so that neither a compiler nor the driver
steals cycles from a timed kernel; there each actor holds one job at a time (depth 1), as nothing
else runs beside a timed kernel anyway.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

from tuner.kernel_templates.target import Target

from . import processes
from .backend import TimingPolicy
from .executor import Executor, ExecutorError, MeasuringDevice, compile_job, describe, failed, measure_job
from .measurement import Artifact, Job, Measurement, Status

ACTOR_START_TIMEOUT_S = 120.0
GROW_CHECK_S = 10.0
COMPILE_NICENESS = 10  # added to a compile worker's niceness (see _yield_to_measuring)
WORKER_NICENESS_ENV = "RAY_worker_niceness"  # what a raylet adds to its workers' niceness (Ray's default: 15)


@ray.remote
def _compile_task(job: Job) -> Artifact:
    _yield_to_measuring()
    return compile_job(job, portable=True)


@functools.cache
def _yield_to_measuring() -> None:
    """Lowers this compile worker's priority, once per process: on a GPU host, compiles on every
    core must not delay the measuring process's launches (a late launch after its start event
    would count the GPU's wait as kernel time) nor the driver's next proposal."""
    os.nice(COMPILE_NICENESS)


@ray.remote(max_restarts=0)
class MeasuringActor:
    def __init__(self) -> None:
        self._node = ray.get_runtime_context().get_node_id()

    def describe(self, target: Target) -> MeasuringDevice:
        return describe(target)

    def measure(self, job: Job, artifact: Artifact, policy: TimingPolicy) -> _Measured:
        started = time.monotonic()
        measurement = measure_job(job, artifact, policy)
        measurement.environment = {**measurement.environment, "ray_node": self._node}
        return _Measured(measurement, started, time.monotonic())


@dataclass(frozen=True)
class _Measured:
    """A measurement and when its call ran on the actor (``time.monotonic`` of the actor's host:
    its difference is the job's own measuring time wherever the actor runs)."""

    measurement: Measurement
    started: float
    ended: float


@dataclass
class _Running:
    """A job sent to a measuring actor. ``started`` is when the driver saw it start: when it was
    sent to an idle actor, or when the result of the job ahead of it was collected; None while
    it waits behind that job."""

    job: Job
    artifact: Artifact
    ref: ray.ObjectRef
    started: float | None
    measured: _Measured | None = None  # once its result is in


@dataclass
class _Slot:
    """One measuring device: its actor and the jobs sent to it, the one it is measuring first."""

    actor: ray.actor.ActorHandle
    target: MeasuringDevice
    jobs: collections.deque[_Running] = field(default_factory=collections.deque)

    @property
    def running(self) -> _Running | None:
        return self.jobs[0] if self.jobs else None


@dataclass
class _Queues:
    pending: collections.deque[Job] = field(default_factory=collections.deque)  # not yet compiling
    compiling: dict[ray.ObjectRef, Job] = field(default_factory=dict)
    compiled: collections.deque[tuple[Job, Artifact]] = field(default_factory=collections.deque)
    done: collections.deque[Measurement] = field(default_factory=collections.deque)


def init_ray(address: str | None) -> bool:
    """Joins ``address`` (a running cluster) or starts a local Ray sized to this machine;
    False when this process was already connected to a Ray (then it is not ours to shut down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    with _sigint_blocked():
        if address:
            ray.init(address=address, **kwargs)
        else:
            # Ray starts its workers 15 nicer than itself: beside any busy process at the driver's
            # priority (a build, another job) a measuring worker then gets a sliver of a core and
            # healthy CPU trials time out. Ours run at the driver's; compiles lower their own.
            os.environ.setdefault(WORKER_NICENESS_ENV, "0")
            ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
    return True


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Starts Ray's processes (raylet, GCS, agents, and the workers they spawn) with SIGINT
    blocked, which they keep: a terminal's Ctrl-C signals the whole process group, and a Ray
    killed under the tuner turns its shutdown into waits on dead processes, a measurement in
    flight into a "crash", and leaves agents behind. The tuner stops them itself.

    Only the main thread blocks it (the children inherit its mask); a waiting thread keeps it
    unblocked, so the kernel hands a Ctrl-C to that thread, and Python raises KeyboardInterrupt
    in the main thread once ray.init comes back from native code (seconds, under load; `tuner
    run` does not wait for that: ``StopOnInterrupt.abort_on_interrupt``). A start cut short that
    way is shut down here, and the processes it had started are stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    started = threading.Event()
    receiver = threading.Thread(target=started.wait, name="sigint-receiver", daemon=True)
    receiver.start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    except BaseException:
        spawned = processes.descendants(os.getpid())
        ray.shutdown()
        processes.kill(spawned)  # the raylet's agents, which outlive a raylet stopped mid-start
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        started.set()


class RayExecutor(Executor):
    # A measurement may take this many times the slowest healthy one before it counts as hung.
    HANG_FACTOR = 5.0
    # On a GPU, submit collects what finished and dispatches (see submit); False: next_result alone.
    DISPATCH_ON_SUBMIT = True

    def __init__(self, policy: TimingPolicy, trial_timeout_s: float, address: str | None = None,
                 devices: int | None = None, depth: int | None = None):
        """``trial_timeout_s`` is the floor of the hang timeout; it grows with the slowest healthy
        measurement seen, so a slow-but-sound kernel is never mistaken for a hang. ``devices``
        is the number of measuring actors (default: every GPU of the cluster for CUDA, one CPU
        device otherwise). ``depth`` is the number of jobs sent to an actor at once, the one it
        measures and those queued behind it (default: 2 for CUDA, 1 for the CPU backend)."""
        if depth is not None and depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self._owns_ray = init_ray(address)
        self._policy = policy
        self._floor_s = trial_timeout_s
        self._slowest_s = 0.0
        self._devices = devices
        self._depth_asked = depth
        self._depth = depth or 1
        self._q = _Queues()
        self._slots: list[_Slot] = []
        self._owed_slots = 0  # actors thrown away and not yet replaced
        self._polling = False  # within submit's turn, which never waits
        self._retried: set[int] = set()
        self._backend = ""
        self._target: Target | None = None
        self._last_grow = time.monotonic()
        try:
            self._compile_slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        except BaseException:  # a Ctrl-C here: no caller holds this executor to close it
            self.close()
            raise
        self.capacity = 2 * self._compile_slots  # enough compiles queued to keep the devices busy

    # ---- devices ----

    def start(self, target: Target) -> MeasuringDevice:
        self._backend, self._target = target.backend, target
        wanted = self._devices or (self._cluster_gpus() if target.backend == "cuda" else 1)
        if target.backend == "cuda" and self._cluster_gpus() == 0:
            raise ExecutorError("the Ray cluster has no GPU to measure on: start a worker with a GPU, "
                                "or tune --arch cpu")
        self._depth = self._depth_asked or (2 if target.backend == "cuda" else 1)
        for _ in range(wanted):
            self._add_slot()
        if not self._slots:
            raise ExecutorError("no measuring device could be started on the Ray cluster")
        # enough in flight to fill every actor's queue while the compile pool stays busy
        self.capacity = max(self.capacity, self._depth * len(self._slots) + self._compile_slots)
        return self._slots[0].target

    @property
    def exclusive(self) -> bool:
        return self._backend == "cpu"

    def _cluster_gpus(self) -> int:
        return int(ray.cluster_resources().get("GPU", 0))

    def _add_slot(self) -> None:
        """Starts one measuring actor; keeps it only if its device matches the study's."""
        options = {"num_gpus": 1, "num_cpus": 0} if self._backend == "cuda" else {"num_cpus": 1}
        # mypy keeps a decorated class's own type, where Ray's decorator made it an ActorClass
        actor = MeasuringActor.options(scheduling_strategy="SPREAD", **options).remote()  # type: ignore[attr-defined]
        try:
            target = ray.get(actor.describe.remote(self._target), timeout=ACTOR_START_TIMEOUT_S)
        except (GetTimeoutError, RayError):
            ray.kill(actor, no_restart=True)
            return
        if self._slots and target.device.name != self._slots[0].target.device.name:
            ray.kill(actor, no_restart=True)  # another kind of device: its timings don't compare
            return
        self._slots.append(_Slot(actor, target))

    def _replace(self, slot: _Slot) -> None:
        """Throws ``slot``'s actor away for a fresh one, started at once, or within ``submit`` at
        the next turn of ``next_result`` (starting an actor takes seconds; ``submit`` must not
        wait). The jobs still sent to it are not its fault: they go back to the front of the
        compiled queue, in order, for the next free device."""
        self._q.compiled.extendleft((queued.job, queued.artifact) for queued in reversed(slot.jobs))
        slot.jobs.clear()
        ray.kill(slot.actor, no_restart=True)
        self._slots.remove(slot)
        self._owed_slots += 1
        if not self._polling:
            self._restore()

    def _restore(self) -> None:
        """Starts the actors owed for those thrown away."""
        owed, self._owed_slots = self._owed_slots, 0
        for _ in range(owed):
            self._add_slot()
        if not self._slots:
            raise ExecutorError("every measuring device of the Ray cluster is gone")

    def _grow(self) -> None:
        """A GPU that joined the cluster mid-run gets a measuring actor of its own."""
        if self._backend != "cuda" or self._devices or time.monotonic() - self._last_grow < GROW_CHECK_S:
            return
        self._last_grow = time.monotonic()
        for _ in range(self._cluster_gpus() - len(self._slots)):
            self._add_slot()

    # ---- jobs ----

    def submit(self, job: Job) -> None:
        """Queues ``job`` and starts its compile at once where a compile slot is free, so the
        compile pool fills while the driver is still proposing the rest of the batch. On a GPU it
        also collects what has finished, without waiting, and hands the free devices their next
        compiled job: a batch of proposals (the first fills ``capacity``, each proposal a model
        fit) does not keep the device waiting for the driver's next ``next_result``."""
        self._q.pending.append(job)
        self._launch_compiles()
        if self.DISPATCH_ON_SUBMIT and not self.exclusive:
            self._poll()

    def _poll(self) -> None:
        """A turn that never waits: the finished compiles and measurements collected, the free
        devices and compile slots handed their next job (results wait in ``done``)."""
        refs = self._waiting_on()
        self._polling = True
        try:
            if refs:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                for ref in ready:
                    self._collect(ref)
            self._launch_compiles()
            self._dispatch()
        finally:
            self._polling = False

    def next_result(self, timeout: float | None = None) -> Measurement | None:
        """Every turn hands the free devices their next compiled job before anything is returned:
        a device whose measurement just landed starts the next one while the driver stores the
        result and proposes (on a GPU; on the CPU backend, see ``_ready``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._restore()
            self._grow()
            self._launch_compiles()
            self._dispatch()
            if self._ready():
                break
            refs = self._waiting_on()
            if not refs:
                return None
            ready, _ = ray.wait(refs, num_returns=1, timeout=self._wait_budget(deadline))
            if ready:
                self._collect(ready[0])
            else:
                self._time_out_hung()
                if deadline is not None and time.monotonic() >= deadline:
                    break
        return self._q.done.popleft() if self._ready() else None

    def _waiting_on(self) -> list[ray.ObjectRef]:
        """What can finish next: the compiles, and the job each actor measures (those queued
        behind it wait for it)."""
        return list(self._q.compiling) + [s.running.ref for s in self._slots if s.running]

    def _ready(self) -> bool:
        """Results to hand back. On the CPU backend they are held until the batch of compiled
        jobs has been measured: the driver stores them and proposes while the next batch
        compiles, never beside a timed kernel, and the batch's measurements run back to back."""
        if not self._q.done:
            return False
        return not self.exclusive or not (self._measuring() or self._q.compiled)

    def _measuring(self) -> bool:
        return any(slot.jobs for slot in self._slots)

    def _launch_compiles(self) -> None:
        if self.exclusive and (self._measuring() or self._q.compiled):
            return
        while self._q.pending and len(self._q.compiling) < self._compile_slots:
            job = self._q.pending.popleft()
            self._q.compiling[_compile_task.options(num_cpus=1).remote(job)] = job

    def _dispatch(self) -> None:
        """Hands compiled jobs to the actors, every idle one first, then those with room in
        their queue: a second job never waits behind a busy device while another one idles."""
        if self.exclusive and self._q.compiling:  # no compile beside a timed kernel on the CPU backend
            return
        for level in range(self._depth):
            for slot in self._slots:
                while len(slot.jobs) <= level and self._q.compiled:
                    job, artifact = self._q.compiled.popleft()
                    if artifact.error is not None:  # no need to bother the device
                        self._q.done.append(measure_job(job, artifact, self._policy))
                        continue
                    self._send(slot, job, artifact)

    def _send(self, slot: _Slot, job: Job, artifact: Artifact) -> None:
        ref = slot.actor.measure.remote(job, artifact, self._policy)
        slot.jobs.append(_Running(job, artifact, ref, None if slot.jobs else time.monotonic()))

    def _timeout_s(self) -> float:
        return max(self._floor_s, self.HANG_FACTOR * self._slowest_s)

    def _wait_budget(self, deadline: float | None) -> float:
        limits = [1.0] + [max(0.0, s.running.started + self._timeout_s() - time.monotonic())
                          for s in self._slots if s.running and s.running.started is not None]
        if deadline is not None:
            limits.append(max(0.0, deadline - time.monotonic()))
        return min(limits)

    def _collect(self, ref: ray.ObjectRef) -> None:
        if ref in self._q.compiling:
            job = self._q.compiling.pop(ref)
            try:
                self._q.compiled.append((job, ray.get(ref)))
            except RayError as exc:
                self._q.done.append(failed(job, Status.CRASHED, f"compile worker died: {exc}"))
            return
        slot = next(s for s in self._slots if s.running and s.running.ref == ref)
        running = slot.jobs.popleft()
        try:
            running.measured = ray.get(ref)
        except RayActorError as exc:
            self._actor_died(slot, running, exc)
            return
        except RayTaskError as exc:
            self._q.done.append(failed(running.job, Status.CRASHED, f"measuring raised: {exc}"))
            self._start_next(slot)
            return
        measurement = running.measured.measurement
        if measurement.status is Status.OK:
            self._slowest_s = max(self._slowest_s, running.measured.ended - running.measured.started)
            self._start_next(slot)
        elif measurement.status is Status.LAUNCH_ERROR:
            self._replace(slot)  # a faulting kernel poisons the CUDA context it ran in, and its queue's
        else:
            self._start_next(slot)
        self._q.done.append(measurement)

    @staticmethod
    def _start_next(slot: _Slot) -> None:
        """The job queued behind the one just collected is running now: its hang clock starts."""
        if slot.running is not None:
            slot.running.started = time.monotonic()

    def _actor_died(self, slot: _Slot, running: _Running, exc: Exception) -> None:
        """A crashed kernel or a lost node: the job gets one more try on a fresh actor (the jobs
        queued behind it go back to the compiled queue, their own try unspent)."""
        self._replace(slot)
        trial = running.job.trial_id
        if trial in self._retried:
            self._q.done.append(failed(running.job, Status.CRASHED,
                                       f"the measuring process died, twice: {exc}"))
        else:
            self._retried.add(trial)
            self._q.compiled.appendleft((running.job, running.artifact))

    def _time_out_hung(self) -> None:
        """Blames the job each actor is measuring, on its own time since it started, never one
        queued behind it (that one goes back to the compiled queue as the actor is replaced)."""
        for slot in list(self._slots):
            running = slot.running
            if running and running.started is not None and time.monotonic() - running.started > self._timeout_s():
                if ray.wait([running.ref], timeout=0)[0]:  # it ended after all: no hang
                    self._collect(running.ref)
                    continue
                slot.jobs.popleft()
                self._q.done.append(failed(running.job, Status.TIMEOUT,
                                           f"no result after {self._timeout_s():.1f} s: the kernel hung "
                                           "or is far too slow; its process was replaced"))
                self._replace(slot)

    def close(self) -> None:
        for slot in self._slots:
            ray.kill(slot.actor, no_restart=True)
        self._slots.clear()
        for ref in self._q.compiling:
            ray.cancel(ref, force=True)
        self._q = _Queues()
        if self._owns_ray:  # here, not in Ray's exit handler, where a second Ctrl-C would land
            ray.shutdown()
            self._owns_ray = False
