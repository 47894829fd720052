"""Plain frozen records the Store hands out: no ORM object ever leaves ``tuner.db``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StudyRecord:
    """A study with its trial counts by status and its best ok latency (seconds)."""

    id: int
    name: str
    kernel: str
    backend: str
    template_path: str | None
    problem: dict[str, Any]
    arch: str
    device_name: str
    sampler: str
    directions: list[str]
    created_at: datetime
    counts: dict[str, int] = field(default_factory=dict)
    best_latency_s: float | None = None

    @property
    def n_trials(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class TrialRecord:
    """One stored trial. Timing fields are seconds and ``None`` where nothing was timed."""

    id: int
    study: str
    number: int
    config: dict[str, Any]
    status: str
    reason: str | None
    median_s: float | None
    q1_s: float | None
    q3_s: float | None
    min_s: float | None
    max_s: float | None
    mean_s: float | None
    repeats: int | None
    clock_mhz: float | None
    rel_l2: float | None
    max_abs: float | None
    compile_time_s: float | None
    resources: dict[str, Any]
    environment: dict[str, Any]
    env_key: str
    source_hash: str | None
    log: str
    reused_from: int | None
    on_front: bool
    created_at: datetime


@dataclass(frozen=True)
class TrialPage:
    """One page of a study's trials; ``total`` counts every trial that matched the filters."""

    items: list[TrialRecord]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class TunedProblem:
    """A problem of a kernel tuned on an arch, with its fastest ok latency within the error bound."""

    problem_id: int
    problem: dict[str, Any]
    best_latency_s: float
