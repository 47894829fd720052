"""The values that cross the worker seam: a job going out, an artifact and a measurement coming back.

Failures are data here (a :class:`Status` other than ``ok`` with a reason), never exceptions:
a worker raises only for its own bugs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from tuner.kernel_templates.spec import Source
from tuner.kernel_templates.target import Target


class Status(str, Enum):
    OK = "ok"
    INVALID = "invalid"  # rejected by the spec's constraints: never compiled
    COMPILE_ERROR = "compile_error"
    LAUNCH_ERROR = "launch_error"
    WRONG_RESULT = "wrong_result"
    TIMEOUT = "timeout"
    CRASHED = "crashed"


@dataclass(frozen=True)
class SpecRef:
    """How a worker process finds the spec again: a built-in (name, backend, family) or a template file."""

    name: str
    backend: str
    path: str | None = None
    family: str | None = None  # None: the kernel's first registered family for the backend


@dataclass(frozen=True)
class Artifact:
    """A compiled kernel on disk (shared object or cubin), or the reason there is none.

    ``binary`` carries the file's bytes when the artifact travels to another machine: the
    measuring node may not share the compiling node's disk (see ``workers.executor.localize``).
    """

    source_hash: str
    path: str | None
    compile_time_s: float
    cached: bool
    resources: dict[str, Any] = field(default_factory=dict)  # registers, shared/local bytes, ...
    log: str = ""
    error: str | None = None
    binary: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Job:
    """One trial to measure: where the spec is, what to run, on what inputs."""

    trial_id: int
    spec: SpecRef
    config: dict[str, Any]
    problem: dict[str, Any]
    target: Target
    source: Source
    seed: int


@dataclass(frozen=True)
class Timing:
    """Latency statistics over ``repeats`` timed runs, in seconds."""

    median_s: float
    q1_s: float
    q3_s: float
    min_s: float
    max_s: float
    mean_s: float
    repeats: int
    clock_mhz: float | None = None

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s


@dataclass
class Measurement:
    """What one trial produced. ``timing`` and errors are set only where they were measured."""

    trial_id: int
    status: Status
    source_hash: str
    timing: Timing | None = None
    rel_l2: float | None = None
    max_abs: float | None = None
    compile_time_s: float | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)  # host, device, software versions
    reason: str | None = None
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def tail(text: str, limit: int = 4000) -> str:
    """The end of a long log, which is where compilers and crashes say what went wrong."""
    return text if len(text) <= limit else "…" + text[-limit:]
