"""Plain frozen records the Store hands out: no ORM object ever leaves ``tuner.db``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cached_property
from typing import Any

from tuner.workers.measurement import Measurement


@dataclass(frozen=True)
class StudyRecord:
    """A study with its trial counts by status and its best ok latency (seconds).

    ``space`` holds what reading needs of the study's template (see ``KernelSpec.space``), so
    no reader imports the template; ``template_digest`` is the SHA-256 of the template file."""

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
    space: dict[str, Any] | None = None  # KernelSpec.space() at creation; None before schema 0003
    flops: float | None = None  # of the study's problem, from its template
    bytes_moved: float | None = None
    template_digest: str | None = None  # None before schema 0004

    @property
    def n_trials(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class TrialRecord:
    """One stored trial: where it belongs, its config, and the measurement it stored.

    The measurement's values also read flat, by the names of :meth:`Measurement.flat`
    (``trial.median_s``, ``trial.status`` as text, ``trial.extra``): the API's schemas, the
    dashboard's templates and the CLI's tables read trials so, and a metric added to the
    measurement reaches them with no change here. Timing fields are seconds, ``None`` where
    nothing was timed.
    """

    id: int
    study: str
    number: int
    config: dict[str, Any]
    measurement: Measurement
    env_key: str
    reused_from: int | None
    on_front: bool
    created_at: datetime

    @cached_property
    def _measured(self) -> dict[str, Any]:
        return self.measurement.flat()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "measurement":  # not set yet (copy, unpickling)
            raise AttributeError(name)
        try:
            return self._measured[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None

    def flat(self) -> dict[str, Any]:
        """The trial as named values: its own fields and its measurement's, side by side."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "measurement"}
        return self._measured | own


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


@dataclass(frozen=True, slots=True)
class TrialPoint:
    """A measured trial as a plot needs it: far lighter than a :class:`TrialRecord`."""

    number: int
    median_s: float
    rel_l2: float
    config: dict[str, Any]
    on_front: bool
