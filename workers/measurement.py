"""The values that cross the worker seam: a job going out, an artifact and a measurement coming back.

Failures are data here (a :class:`Status` other than ``ok`` with a reason), never exceptions:
a worker raises only for its own bugs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tuner.enums import Status
from tuner.kernel_templates.spec import Source
from tuner.kernel_templates.target import Target


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
    """One trial to measure: where the spec is, what to run, on what inputs.

    ``seed`` draws the inputs (``KernelSpec.make_inputs``); a study gives every trial of a run the
    same one, so its configs are all verified on the same inputs (``tuner.study``)."""

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
    """What one trial produced. ``timing`` and errors are set only where they were measured.

    ``extra`` is the open field for metrics beyond these (power, clocks, profiler counters):
    names to JSON numbers or texts, stored, served and exported as they are, with no schema
    change. A number that needs to be sorted or filtered in SQL becomes a field here instead:
    ``tuner.db`` derives its column and needs one migration.
    """

    trial_id: int
    status: Status
    source_hash: str | None  # None for a config rejected before its source was rendered
    timing: Timing | None = None
    rel_l2: float | None = None
    max_abs: float | None = None
    compile_time_s: float | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)  # host, device, software versions
    reason: str | None = None
    log: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        """Every value by name, the timing's fields beside the others and the status as text:
        the names of the stored columns and of the API's trial fields. Inverse: :meth:`from_flat`."""
        values = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.name not in _NOT_FLAT}
        values["status"] = self.status.value
        values.update({name: getattr(self.timing, name, None) for name in TIMING_FIELDS})
        return values

    @classmethod
    def from_flat(cls, trial_id: int, values: Mapping[str, Any]) -> Measurement:
        """The measurement whose :meth:`flat` is ``values`` (other keys are ignored)."""
        timed = values.get("median_s") is not None
        timing = Timing(**{name: values[name] for name in TIMING_FIELDS}) if timed else None
        own = {f.name: values[f.name] for f in fields(cls)
               if f.name not in _NOT_FLAT and f.name in values}
        return cls(trial_id=trial_id, **own | {"status": Status(values["status"]), "timing": timing})

    def metrics(self) -> dict[str, Any]:
        """The measured quantities alone (timing, errors, compile time and the extra metrics),
        by name: what a best-config answer reports beside its config."""
        flat = self.flat()
        return {name: value for name, value in flat.items() if name not in _DESCRIPTIVE} | self.extra


TIMING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Timing))
_NOT_FLAT = frozenset({"trial_id", "timing"})
# Fields of a measurement that describe it rather than measure it.
_DESCRIPTIVE = frozenset({"status", "source_hash", "reason", "log", "resources", "environment",
                          "extra"})


def verdict(rel_l2: float, bound: float) -> tuple[Status, str | None]:
    """Whether an output's relative L2 error passes the template's bound, and why not."""
    if not math.isfinite(rel_l2):
        return Status.WRONG_RESULT, ("output holds NaN or inf: the kernel left part of it "
                                     "unwritten or overflowed")
    if rel_l2 > bound:
        return Status.WRONG_RESULT, (f"relative L2 error {rel_l2:.3g} exceeds the template's "
                                     f"bound {bound:.3g}")
    return Status.OK, None


def tail(text: str, limit: int = 4000) -> str:
    """The end of a long log, which is where compilers and crashes say what went wrong."""
    return text if len(text) <= limit else "…" + text[-limit:]


# A compiler's diagnostic line: gcc/clang `kernel.c:3:5: error: ...`, nvcc `kernel.cu(3): error: ...`,
# `fatal error:`, the linker's `collect2: error:`.
_ERROR_LINE = re.compile(r"\berror\b\s*:", re.IGNORECASE)
# The temporary directory a compile ran in: noise in a reason, and different every time.
_TEMP_DIR = re.compile(r"(?:/[^\s/:]+)*/tuner-(?:cc|nvcc)-[^/\s]+/")


def error_line(log: str, fallback: str) -> str:
    """A compile failure in one line: the compiler's first ``error:`` line (not its first line,
    ``kernel.c: In function 'f':``), without the build directory; ``fallback`` if it has none."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    found = next((line for line in lines if _ERROR_LINE.search(line)), None)
    return _TEMP_DIR.sub("", found) if found else fallback
