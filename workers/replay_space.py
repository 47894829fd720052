"""Recorded search spaces: every config of a kernel measured once, read back for replay.

Two sources: Kernel Tuner's cache files (JSON, optionally gzipped: ``tune_params``, and one
entry per config with its ``time`` in ms, a string such as ``"CompilationFailedConfig"`` for a
failure, and the ``compile_time``/``benchmark_time``/``framework_time`` it cost), and the
project's own exhaustive studies in a tuner database (``bench/results/attention_tuned.db.gz``).

Times here are seconds. A recorded space knows its valid configs (those it holds) and, where the
recording came with them, the restrictions (Python expressions over the parameters) that define
the valid set, as Kernel Tuner's ``restrictions`` and the T1 format's ``Conditions`` do.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .measurement import Status

# Kernel Tuner's failure markers -> our statuses
_KT_FAILURES = {"CompilationFailedConfig": Status.COMPILE_ERROR, "RuntimeFailedConfig": Status.LAUNCH_ERROR,
                "InvalidConfig": Status.INVALID}


class RecordingError(Exception):
    """A recording that cannot be read; the message says what to do."""


@dataclass(frozen=True)
class Recorded:
    """One recorded config: its outcome, and what measuring it cost (seconds)."""

    status: Status
    times_s: tuple[float, ...] = ()  # the timed repeats (or the one summary time)
    time_s: float | None = None  # the objective: the recording's own summary of ``times_s``
    rel_l2: float | None = None
    compile_s: float = 0.0
    benchmark_s: float = 0.0
    overhead_s: float = 0.0  # the tuning framework's own time around the measurement
    reason: str | None = None

    @property
    def cost_s(self) -> float:
        return self.compile_s + self.benchmark_s + self.overhead_s


@dataclass(frozen=True)
class RecordedSpace:
    """A search space and the outcome of each of its configs, keyed by values in ``params`` order."""

    name: str
    kernel: str
    device_name: str
    arch: str
    problem: dict[str, Any]
    params: dict[str, tuple[Any, ...]]
    records: Mapping[tuple, Recorded]
    restrictions: tuple[str, ...] = ()
    source: str = ""  # the file it was read from
    rejected: Mapping[tuple, str] = field(default_factory=dict)  # configs recorded as invalid, and why

    def key(self, config: Mapping[str, Any]) -> tuple:
        return tuple(config[name] for name in self.params)

    def config(self, key: tuple) -> dict[str, Any]:
        return dict(zip(self.params, key, strict=True))

    def lookup(self, config: Mapping[str, Any]) -> Recorded | None:
        return self.records.get(self.key(config))

    def ok(self) -> dict[tuple, float]:
        return {k: r.time_s for k, r in self.records.items() if r.status is Status.OK and r.time_s is not None}

    @cached_property
    def optimum_s(self) -> float:
        return min(self.ok().values())

    @property
    def has_error(self) -> bool:
        """Whether the recording has a second objective (numerical error) worth trading against."""
        errors = {r.rel_l2 for r in self.records.values() if r.status is Status.OK}
        return len(errors - {None}) > 1


def open_recording(path: str | Path, study: str | None = None) -> RecordedSpace:
    """A Kernel Tuner cache file (``.json``/``.json.gz``) or a tuner database (``.db``/``.db.gz``;
    ``study`` names the study, required when it holds more than one)."""
    file = Path(path)
    if not file.is_file():
        raise RecordingError(f"recording {path} does not exist: pass a Kernel Tuner cache file "
                             "(.json or .json.gz) or a tuner database (.db or .db.gz)")
    suffixes = "".join(file.suffixes[-2:])
    if suffixes.endswith((".db", ".db.gz", ".sqlite")):
        return load_tuner_study(file, study)
    if study is not None:
        raise RecordingError(f"{path} is a Kernel Tuner cache file, which holds one space: drop the study name")
    return load_kernel_tuner_cache(file)


def _read_json(file: Path) -> dict[str, Any]:
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rt") as handle:
            data = json.load(handle)
    except (OSError, ValueError, EOFError) as exc:
        raise RecordingError(f"{file} is not a readable Kernel Tuner cache file ({exc})") from None
    if not isinstance(data, dict) or not {"tune_params", "cache", "tune_params_keys"} <= set(data):
        raise RecordingError(f"{file} is not a Kernel Tuner cache file: it needs tune_params, "
                             "tune_params_keys and cache")
    return data


def load_kernel_tuner_cache(file: Path, restrictions: tuple[str, ...] | None = None) -> RecordedSpace:
    """Reads a Kernel Tuner cache. Restrictions come from ``restrictions``, else from a
    ``search_space_T1.json`` beside the file (its ``Conditions``), else there are none."""
    data = _read_json(file)
    keys = list(data["tune_params_keys"])
    params = {k: tuple(data["tune_params"][k]) for k in keys}
    records: dict[tuple, Recorded] = {}
    rejected: dict[tuple, str] = {}
    for entry in data["cache"].values():
        key = tuple(entry[k] for k in keys)
        record = _kt_record(entry)
        if record.status is Status.INVALID:
            rejected[key] = record.reason or "invalid"
        else:
            records[key] = record
    if restrictions is None:
        restrictions = t1_conditions(file.parent / "search_space_T1.json")
    device = str(data.get("device_name", "unknown device"))
    name = f"{data.get('kernel_name', file.stem)}@{_stem(file)}"
    problem = {f"size_{i}": int(v) for i, v in enumerate(data.get("problem_size", []))}
    return RecordedSpace(name=name, kernel=str(data.get("kernel_name", _stem(file))), device_name=device,
                         arch=slug(_stem(file)), problem=problem, params=params, records=records,
                         restrictions=tuple(restrictions), source=str(file), rejected=rejected)


def _kt_record(entry: Mapping[str, Any]) -> Recorded:
    ms = 1e-3
    costs: dict[str, Any] = dict(compile_s=float(entry.get("compile_time", 0) or 0) * ms,
                                 benchmark_s=float(entry.get("benchmark_time", 0) or 0) * ms,
                                 overhead_s=float(entry.get("framework_time", 0) or 0) * ms)
    time = entry.get("time")
    if isinstance(time, str) or time is None or not math.isfinite(float(time)):
        status = _KT_FAILURES.get(str(time), Status.LAUNCH_ERROR)
        return Recorded(status=status, reason=f"recorded as {time}", **costs)
    times = tuple(float(t) * ms for t in entry.get("times") or [time])
    # Kernel Tuner verified nothing here (no answer was given), so the error is not known: 0
    return Recorded(status=Status.OK, times_s=times, time_s=float(time) * ms, rel_l2=0.0, **costs)


def t1_conditions(file: Path) -> tuple[str, ...]:
    """The ``Conditions`` of a T1 search-space file, as Python expressions, or () without one."""
    if not file.is_file():
        return ()
    try:
        data = json.loads(file.read_text())
        conditions = data["ConfigurationSpace"].get("Conditions", [])
        return tuple(str(c["Expression"]) for c in conditions)
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordingError(f"{file} is not a T1 search-space file ({exc}): fix it or move it away") from None


def load_tuner_study(file: Path, study: str | None) -> RecordedSpace:
    """An exhaustive study from a tuner database; a gzipped one is unpacked to a temporary file."""
    return _with_store(file, lambda store: _study_space(store, file, study))


def load_tuner_studies(file: Path) -> list[RecordedSpace]:
    """Every study of a tuner database, as recorded spaces."""
    return _with_store(file, lambda store: [_study_space(store, file, s.name) for s in store.studies()])


def _with_store(file: Path, read):
    from tuner.db import Store, StoreError

    with tempfile.TemporaryDirectory() as tmp:
        db_file = file
        if file.suffix == ".gz":
            db_file = Path(tmp) / file.stem
            with gzip.open(file, "rb") as packed, open(db_file, "wb") as out:
                shutil.copyfileobj(packed, out)
        try:
            store = Store.open(f"sqlite:///{db_file}", create=False)
        except StoreError as exc:
            raise RecordingError(f"{file} is not a tuner database ({exc})") from None
        try:
            return read(store)
        finally:
            store.close()


def _study_space(store, file: Path, name: str | None) -> RecordedSpace:
    studies = store.studies()
    if name is None:
        if len(studies) != 1:
            names = ", ".join(s.name for s in studies[:5])
            raise RecordingError(f"{file} holds {len(studies)} studies: name one with --replay-study "
                                 f"(e.g. {names})")
        name = studies[0].name
    record = store.study(name)
    if record is None:
        raise RecordingError(f"{file} has no study {name!r}: `tuner studies --db sqlite:///...` lists them")
    trials = store.trials(record.id, limit=1_000_000).items
    params = _study_params(record, trials)
    records: dict[tuple, Recorded] = {}
    rejected: dict[tuple, str] = {}
    for t in trials:
        key = tuple(t.config[p] for p in params)
        if t.status == Status.INVALID.value:
            rejected[key] = t.reason or "invalid"
        elif key not in records:  # the first measurement of a config is the recorded one
            records[key] = _trial_record(t)
    return RecordedSpace(name=record.name, kernel=record.kernel, device_name=record.device_name,
                         arch=record.arch, problem=dict(record.problem), params=params, records=records,
                         source=str(file), rejected=rejected)


def _study_params(record, trials) -> dict[str, tuple[Any, ...]]:
    """The template's own choice order when it is a built-in, else the values seen, sorted."""
    from tuner.kernel_templates import SpecError, find_builtin

    try:
        spec = find_builtin(record.kernel, record.backend)
        return {p.name: tuple(p.choices) for p in spec.params}
    except SpecError:
        names = list(trials[0].config) if trials else []
        return {n: tuple(sorted({t.config[n] for t in trials}, key=repr)) for n in names}


def _trial_record(t) -> Recorded:
    status = Status(t.status)
    benchmark = (t.mean_s or 0.0) * (t.repeats or 0)
    if status is not Status.OK:
        return Recorded(status=status, compile_s=t.compile_time_s or 0.0, reason=t.reason)
    spread = tuple(v for v in (t.min_s, t.q1_s, t.median_s, t.q3_s, t.max_s) if v is not None)
    return Recorded(status=status, times_s=spread, time_s=t.median_s, rel_l2=t.rel_l2,
                    compile_s=t.compile_time_s or 0.0, benchmark_s=benchmark)


def write_kernel_tuner_cache(space: RecordedSpace, path: Path) -> None:
    """The space as a Kernel Tuner cache file (ms; rejected configs as InvalidConfig), so that Kernel
    Tuner's simulation mode replays the same space as we do."""
    keys = list(space.params)
    ms = 1e3
    cache = {}
    for key in space.rejected:
        cache[",".join(map(str, key))] = {**space.config(key), "time": "InvalidConfig", "compile_time": 0,
                                          "benchmark_time": 0, "framework_time": 0, "verification_time": 0}
    failures = {Status.COMPILE_ERROR: "CompilationFailedConfig"}
    for key, r in space.records.items():
        failure = failures.get(r.status, "RuntimeFailedConfig")
        time = r.time_s * ms if r.status is Status.OK and r.time_s is not None else failure
        cache[",".join(map(str, key))] = {**space.config(key), "time": time, "times": [t * ms for t in r.times_s],
                                          "compile_time": r.compile_s * ms, "benchmark_time": r.benchmark_s * ms,
                                          "framework_time": r.overhead_s * ms, "verification_time": 0}
    data = {"device_name": space.device_name, "kernel_name": space.kernel, "problem_size": [0],
            "tune_params_keys": keys, "tune_params": {k: list(v) for k, v in space.params.items()},
            "objective": "time", "cache": cache}
    path.write_text(json.dumps(data))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "_", text.lower()).strip("_") or "replay"


def _stem(file: Path) -> str:
    name = file.name
    for suffix in (".gz", ".json", ".db"):
        name = name.removesuffix(suffix)
    return name
