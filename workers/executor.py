"""The executor seam: jobs go in, measurements come out in completion order.

Contract: ``start`` is called once and returns what the measuring device is; ``submit`` never
blocks; ``next_result`` blocks up to ``timeout`` seconds and returns None if nothing finished.
Every submitted job yields exactly one Measurement, failures included. Not thread-safe: one
driver thread owns an executor.
"""

from __future__ import annotations

import collections
import os
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tuner.kernel_templates import Target

from . import backend_for, load_spec
from .backend import TimingPolicy
from .cache import cached_path, store_atomically
from .measurement import Artifact, Job, Measurement, Status, tail


@dataclass(frozen=True)
class MeasuringDevice:
    """The device that measures (the study's target as that device has it), and the fingerprint
    its measurements carry."""

    device: Target
    environment: dict[str, Any] = field(default_factory=dict)


def describe(target: Target) -> MeasuringDevice:
    backend = backend_for(target)
    return MeasuringDevice(backend.device(target), backend.environment())


def compile_job(job: Job, portable: bool = False) -> Artifact:
    """Compiles ``job`` for its target; ``portable`` attaches the binary's bytes for a measuring node elsewhere."""
    artifact = backend_for(job.target).compile(job.source, job.target)
    if portable and artifact.path is not None:
        artifact = replace(artifact, binary=Path(artifact.path).read_bytes())
    return artifact


def localize(artifact: Artifact) -> Artifact:
    """The artifact with a path on this machine: compiled elsewhere, its bytes join our cache."""
    if artifact.path is None or Path(artifact.path).exists() or artifact.binary is None:
        return artifact
    compiled = Path(artifact.path)  # the compiling node's cache names its files by their key
    destination = cached_path(compiled.stem, compiled.suffix)
    if not destination.exists():
        store_atomically(artifact.binary, destination)
    return replace(artifact, path=str(destination))


def measure_job(job: Job, artifact: Artifact, policy: TimingPolicy) -> Measurement:
    if artifact.error is not None:
        return failed(job, Status.COMPILE_ERROR, artifact.error, artifact=artifact)
    artifact = localize(artifact)
    backend = backend_for(job.target)
    measurement = backend.measure(job, artifact, load_spec(job.spec), policy)
    measurement.compile_time_s = artifact.compile_time_s
    measurement.resources = {**artifact.resources, **measurement.resources}
    return measurement


def failed(job: Job, status: Status, reason: str, artifact: Artifact | None = None) -> Measurement:
    first_line = reason.strip().splitlines()[0] if reason.strip() else status.value
    return Measurement(trial_id=job.trial_id, status=status, source_hash=job.source.digest(),
                       compile_time_s=artifact.compile_time_s if artifact else None,
                       resources=dict(artifact.resources) if artifact else {},
                       reason=first_line[:300], log=artifact.log if artifact and artifact.log else tail(reason))


class ExecutorError(Exception):
    """The executor cannot measure at all (no device on the cluster); the message says what to do."""


class Executor(ABC):
    capacity: int = 1  # jobs worth keeping in flight

    @abstractmethod
    def start(self, target: Target) -> MeasuringDevice: ...

    @abstractmethod
    def submit(self, job: Job) -> None: ...

    @abstractmethod
    def next_result(self, timeout: float | None = None) -> Measurement | None: ...

    def close(self) -> None:  # noqa: B027 (not abstract: an executor without workers has none to release)
        """Releases workers; jobs still in flight are dropped."""


class LocalExecutor(Executor):
    """Measures in this process, one job at a time, in submission order: for debugging a template
    and for a single GPU without Ray's start-up. For CUDA the submitted jobs compile ahead on a
    thread pool (NVRTC and nvcc run outside the GIL) while the GPU measures; the CPU backend
    compiles each job just before measuring it, so no compile competes with a timed run for the
    cores.

    A kernel that crashes takes the tuner down with it; use the Ray executor for real studies.
    """

    def __init__(self, policy: TimingPolicy, compile_workers: int | None = None):
        self._policy = policy
        self._workers = compile_workers or os.cpu_count() or 1
        self._queue: collections.deque[tuple[Job, Future[Artifact] | None]] = collections.deque()
        self._pool: ThreadPoolExecutor | None = None

    def start(self, target: Target) -> MeasuringDevice:
        if target.backend == "cuda":
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="compile")
            self.capacity = 2 * self._workers  # as the Ray executor: enough compiles to keep the GPU busy
        return describe(target)

    def submit(self, job: Job) -> None:
        self._queue.append((job, self._pool.submit(compile_job, job) if self._pool else None))

    def next_result(self, timeout: float | None = None) -> Measurement | None:
        if not self._queue:
            return None
        job, compiling = self._queue.popleft()
        return measure_job(job, compiling.result() if compiling else compile_job(job), self._policy)

    def close(self) -> None:
        """Drops the queued jobs; a compile already running finishes in its thread."""
        self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
