"""The backend seam: compile a rendered source, then measure the artifact. One backend per file.

Contract:
- a backend builds for the :class:`Target` values whose arch it lists (``archs``); ``device`` gives
  the target as the measuring process's device has it (name, limits), which ``check()`` sees.
- ``compile`` is pure CPU work and may run in any process with the toolchain (Ray CPU tasks);
  it caches on disk by a content hash and never raises for a bad source: it returns an
  :class:`Artifact` whose ``error`` says what the compiler said.
- ``measure`` runs in the one measuring process of a device, one call at a time, so timings do
  not disturb each other. It draws random inputs from ``job.seed`` (two sets: the second for the
  last timed run; the same for every trial of a study, so a backend may keep them and their
  references between trials), poisons the output before every run whose output it verifies,
  times under ``policy``, verifies the output of the first run and of the last timed run against
  the spec's reference, and returns a :class:`Measurement` (failures as statuses, never exceptions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from tuner.kernel_templates.spec import KernelSpec, Source
from tuner.kernel_templates.target import Target

from .measurement import Artifact, Job, Measurement


@dataclass(frozen=True)
class TimingPolicy:
    """How long to time: Triton's do_bench habit of estimating first, then deriving repeats."""

    warmup_s: float = 0.01
    budget_s: float = 0.1
    min_repeats: int = 20
    max_repeats: int = 1000
    flush_l2: bool = True

    def repeats_for(self, estimate_s: float) -> int:
        if estimate_s <= 0:
            return self.max_repeats
        return max(self.min_repeats, min(self.max_repeats, int(self.budget_s / estimate_s)))


class Backend(ABC):
    name: str
    archs: tuple[str, ...]

    def supports(self, target: Target) -> bool:
        return target.backend == self.name and target.arch in self.archs

    @abstractmethod
    def compiler_version(self) -> str: ...

    @abstractmethod
    def compile(self, source: Source, target: Target) -> Artifact: ...

    @abstractmethod
    def device(self, target: Target) -> Target:
        """``target`` as the measuring process's device has it, for the spec's constraint checks."""

    @abstractmethod
    def environment(self) -> dict[str, Any]:
        """Fingerprint of host, device and software: trials are comparable only when it matches."""

    @abstractmethod
    def measure(self, job: Job, artifact: Artifact, spec: KernelSpec,
                policy: TimingPolicy) -> Measurement: ...
