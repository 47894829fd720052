"""Replay executor: answers each job from a recorded space, on a simulated clock.

Nothing is compiled or run: a job's measurement is the recorded one (its time, its repeats, its
error, its compile time), and a recorded failure comes back as the failed trial it was. So the
whole tuner, proposer, sampler, constraint gate and storage, runs unchanged on a CPU in seconds.

The clock is simulated from the recorded costs, as the Ray executor would spend them: each job
compiles on the first free of ``compile_slots`` CPUs, then measures (benchmark and framework
time) on the first free of ``devices`` devices; results come back in the order they would finish.
``charge_driver`` adds the driver's own real time between calls (the sampler, the storage) to the
clock, where an honest wall-clock estimate is wanted; tests leave it off to stay deterministic.
"""

from __future__ import annotations

import heapq
import statistics
import time
from dataclasses import dataclass

from tuner.kernel_templates import Target

from .executor import Executor, ExecutorError, MeasuringDevice
from .measurement import Job, Measurement, Status, Timing
from .replay_space import Recorded, RecordedSpace


@dataclass(frozen=True)
class Finished:
    """When (simulated seconds) a replayed job finished, and what it was."""

    at_s: float
    measurement: Measurement
    recorded: Recorded | None


class ReplayExecutor(Executor):
    def __init__(self, space: RecordedSpace, devices: int = 1, compile_slots: int | None = None,
                 charge_driver: bool = False):
        if devices < 1:
            raise ExecutorError("--devices must be at least 1")
        self.space = space
        self.devices = devices
        self.compile_slots = compile_slots or max(1, 2 * devices)
        self.capacity = self.compile_slots  # as the Ray executor: enough compiles to keep devices busy
        self._cpu_free = [0.0] * self.compile_slots
        self._device_free = [0.0] * devices
        self._finishing: list[tuple[float, int, Finished]] = []  # a heap by finish time
        self._charge_driver = charge_driver
        self._returned_at: float | None = None
        self.now_s = 0.0
        self.history: list[Finished] = []  # every job, in the order it finished

    def start(self, target: Target) -> MeasuringDevice:
        if target.backend != "replay":
            raise ExecutorError(f"the replay executor answers replayed spaces only, not the {target.backend} backend")
        environment = {"replay": self.space.name, "device": self.space.device_name,
                       "recording": self.space.source}
        return MeasuringDevice(target.with_device(self.space.device_name, {}), environment)

    def submit(self, job: Job) -> None:
        self._charge()
        recorded = self.space.lookup(job.config)
        compile_s = recorded.compile_s if recorded else 0.0
        slot = min(range(self.compile_slots), key=self._cpu_free.__getitem__)
        compiled = max(self.now_s, self._cpu_free[slot]) + compile_s
        self._cpu_free[slot] = compiled
        done = compiled
        if recorded is not None and recorded.status is not Status.COMPILE_ERROR:
            device = min(range(self.devices), key=self._device_free.__getitem__)
            done = max(compiled, self._device_free[device]) + recorded.benchmark_s + recorded.overhead_s
            self._device_free[device] = done
        finished = Finished(done, replayed(job, recorded), recorded)
        heapq.heappush(self._finishing, (done, job.trial_id, finished))

    def next_result(self, timeout: float | None = None) -> Measurement | None:
        self._charge()
        if not self._finishing:
            return None
        _, _, finished = heapq.heappop(self._finishing)
        self.now_s = max(self.now_s, finished.at_s)
        self.history.append(finished)
        self._returned_at = time.perf_counter()
        return finished.measurement

    def _charge(self) -> None:
        """The driver's real time since the last result, on the simulated clock (if asked)."""
        if self._charge_driver and self._returned_at is not None:
            now = time.perf_counter()
            self.now_s += now - self._returned_at
            self._returned_at = now


def replay_target(space: RecordedSpace) -> Target:
    """The target a recorded space was measured on, as the replay backend's."""
    return Target(space.arch, name=space.device_name, backend="replay")


def replayed(job: Job, recorded: Recorded | None) -> Measurement:
    """The recorded measurement of ``job``'s config, as a worker would have returned it."""
    digest = job.source.digest()
    if recorded is None:
        return Measurement(trial_id=job.trial_id, status=Status.CRASHED, source_hash=digest,
                           reason="this config is not in the recording: it was never measured")
    if recorded.status is not Status.OK:
        return Measurement(trial_id=job.trial_id, status=recorded.status, source_hash=digest,
                           compile_time_s=recorded.compile_s, reason=recorded.reason or recorded.status.value)
    return Measurement(trial_id=job.trial_id, status=Status.OK, source_hash=digest,
                       timing=timing_of(recorded), rel_l2=recorded.rel_l2, max_abs=None,
                       compile_time_s=recorded.compile_s)


def timing_of(recorded: Recorded) -> Timing:
    assert recorded.time_s is not None  # an ok recording has its time
    times = sorted(recorded.times_s) or [recorded.time_s]
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else (times[0],) * 3
    return Timing(median_s=recorded.time_s, q1_s=q1, q3_s=q3, min_s=times[0], max_s=times[-1],
                  mean_s=statistics.fmean(times), repeats=len(times))
