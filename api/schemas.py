"""Response schemas of the REST API, apart from the service's records.

Each schema reads a record by attribute (``model_validate(record)``), so the API's JSON shape
is declared here and documented in the OpenAPI schema, whatever the records carry besides.
Non-finite floats (an output full of NaN has an infinite error) are sent as ``null``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuner.service import TrialPoint


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, ser_json_inf_nan="null")


class Health(Schema):
    status: str = "ok"


class ParamOut(Schema):
    name: str
    choices: list[Any]
    doc: str = ""


class ProblemParamOut(Schema):
    name: str
    kind: str = Field(description="int, bool or str")
    default: Any
    choices: list[Any] | None = None
    minimum: int | None = None
    doc: str = ""


class KernelOut(Schema):
    name: str
    backend: str
    description: str = ""
    archs: list[str]
    params: list[ParamOut]
    problem_params: list[ProblemParamOut]
    space_size: int


class StudyOut(Schema):
    id: int
    name: str
    kernel: str
    backend: str = Field(description="cpu or cuda")
    problem: dict[str, Any] = Field(description="the problem parameters the study tunes for")
    arch: str
    device_name: str = Field(description="the device its first tuner measured on")
    sampler: str = Field(description="the Optuna sampler that proposes its configs")
    directions: list[str] = Field(description="Optuna's directions of the two objectives, "
                                              "latency and error")
    created_at: datetime
    counts: dict[str, int] = Field(description="trials by status")
    n_trials: int
    best_latency_s: float | None = Field(description="median latency of the fastest ok trial")
    template_digest: str | None = Field(
        default=None, description="SHA-256 of the template file the study was tuned with "
                                  "(null for a built-in kernel, or a study older than schema 0002)")


class TrialSummary(Schema):
    """A trial as listed: everything but the log, resources and environment."""

    id: int
    number: int
    config: dict[str, Any]
    status: str
    reason: str | None
    median_s: float | None
    q1_s: float | None
    q3_s: float | None
    rel_l2: float | None
    max_abs: float | None
    compile_time_s: float | None
    extra: dict[str, Any] = Field(description="further metrics the measurement reported "
                                              "(power, clocks, profiler counters), by name")
    on_front: bool
    reused_from: int | None
    created_at: datetime


class StudyDetail(StudyOut):
    best: TrialSummary | None = Field(description="the fastest trial on the Pareto front")
    running: int = Field(description="trials in flight now; 0 when no tuner is at work on the study")


class TrialOut(TrialSummary):
    """One trial in full, with its generated source: every stored value of the trial, these
    and any measured column added since (``additionalProperties``)."""

    model_config = ConfigDict(extra="allow")

    study: str
    min_s: float | None
    max_s: float | None
    mean_s: float | None
    repeats: int | None
    clock_mhz: float | None
    resources: dict[str, Any]
    environment: dict[str, Any]
    env_key: str
    source_hash: str | None
    log: str
    source: str | None = Field(description="the generated kernel source; null when none was stored")


class TrialPageOut(Schema):
    items: list[TrialSummary]
    total: int = Field(description="trials matching the filters, over all pages")
    offset: int
    limit: int


class PointsOut(Schema):
    """A study's measured trials (ok, finite latency and error) as columns, for its plots.

    Column ``i`` of every list is one trial. A config is sent as indices into each parameter's
    values, so a trial costs a few bytes beside its numbers.
    """

    number: list[int]
    median_s: list[float] = Field(description="median latency, seconds")
    rel_l2: list[float] = Field(description="relative L2 error")
    front: list[int] = Field(description="numbers of the trials on the stored Pareto front")
    values: dict[str, list[Any]] = Field(description="each config parameter's values, as seen")
    config: dict[str, list[int | None]] = Field(
        description="per parameter, each trial's value as an index into values[parameter] "
                    "(null where its config lacks the parameter)")

    @classmethod
    def of(cls, points: list[TrialPoint]) -> PointsOut:
        names = sorted({name for point in points for name in point.config})
        index: dict[str, dict[Any, int]] = {name: {} for name in names}
        config = {name: [index[name].setdefault(point.config[name], len(index[name]))
                         if name in point.config else None for point in points]
                  for name in names}
        return cls(number=[p.number for p in points], median_s=[p.median_s for p in points],
                   rel_l2=[p.rel_l2 for p in points], front=[p.number for p in points if p.on_front],
                   values={name: list(seen) for name, seen in index.items()}, config=config)


class Provenance(Schema):
    study: str
    trial: int = Field(description="the trial's number in its study")
    device: str | None
    software: dict[str, Any] = Field(description="device and software versions it was measured with")
    measured_at: datetime


class BestOut(Schema):
    """The fastest stored config for a kernel, arch and problem within an error bound.

    When the asked problem was never tuned, the answer comes from the nearest tuned problem:
    the same non-size parameters (dtype, flags) and the least sum over size parameters of
    ``|log2(asked / tuned)|``; ``exact`` is then false and ``note`` says so.
    """

    kernel: str
    arch: str
    problem: dict[str, Any] = Field(description="the asked problem, the kernel's defaults filled in")
    tuned_problem: dict[str, Any] = Field(description="the problem the answer was tuned for")
    exact: bool = Field(description="whether the asked problem itself was tuned")
    distance: float = Field(description="0 when exact, else the nearest rule's distance")
    max_error: float | None = Field(description="the error bound asked for")
    config: dict[str, Any] = Field(description="the config: the kernel's parameter values")
    latency_s: float | None = Field(description="median latency of the trial")
    rel_l2: float | None = Field(description="relative L2 error of its output")
    metrics: dict[str, Any] = Field(description="everything the trial measured, by name: timing "
                                                "(seconds), errors, compile time, extra metrics")
    note: str | None
    provenance: Provenance


class ErrorOut(Schema):
    detail: str
