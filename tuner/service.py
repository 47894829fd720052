"""The one entry point the CLI and the REST API call: kernels, studies, trials, fronts, best configs.

Neither caller touches the Store's queries. Errors are two kinds: :class:`NotFound` (what was
asked for is not stored; the message says what is missing and how to get it) and
:class:`tuner.errors.UsageError` (the request itself is malformed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tuner.db import HOST_KEYS, FamilyFilter, Store, StudyRecord, TrialPage, TrialPoint, TrialRecord
from tuner.errors import UsageError
from tuner.kernel_templates import (
    ARCHS,
    KernelSpec,
    SpecError,
    StoredSpace,
    builtin_specs,
    find_builtin,
    problem_spec,
    specs_for,
)
from tuner.kernel_templates.families import FAMILY
from tuner.kernel_templates.spec import ProblemSpace, canonical_json
from tuner.names import check_param_name
from tuner.problems import nearest_problem, problem_distance  # noqa: F401 (re-exported)


class NotFound(Exception):
    """Nothing stored matches the request; the message says what is missing."""


@dataclass(frozen=True)
class ParamInfo:
    name: str
    choices: list[Any]
    doc: str


@dataclass(frozen=True)
class ProblemParamInfo:
    name: str
    kind: str  # "int", "bool" or "str"
    default: Any
    choices: list[Any] | None
    minimum: int | None
    doc: str


@dataclass(frozen=True)
class KernelInfo:
    name: str
    backend: str
    description: str
    archs: list[str]
    params: list[ParamInfo]
    problem_params: list[ProblemParamInfo]
    space_size: int  # configs in the grid of its parameters' choices


@dataclass(frozen=True)
class TrialDetail:
    """A trial and the source text it compiled (``None`` when no source was stored)."""

    trial: TrialRecord
    source: str | None


@dataclass(frozen=True)
class BestAnswer:
    """The fastest stored config for a request, with where it came from.

    ``exact`` is False when ``problem`` itself was never tuned and the answer comes from
    ``tuned_problem``, the nearest tuned one at ``distance`` (see :func:`problem_distance`).
    """

    kernel: str
    arch: str
    problem: dict[str, Any]
    tuned_problem: dict[str, Any]
    trial: TrialRecord
    distance: float = 0.0
    max_error: float | None = None

    @property
    def exact(self) -> bool:
        return self.tuned_problem == self.problem

    @property
    def config(self) -> dict[str, Any]:
        return self.trial.config

    @property
    def study(self) -> str:
        return self.trial.study

    @property
    def device(self) -> str | None:
        return self.trial.environment.get("device")

    @property
    def software(self) -> dict[str, Any]:
        """The trial's environment less the host name: device and software versions."""
        return {k: v for k, v in self.trial.environment.items() if k not in HOST_KEYS}

    @property
    def measured_at(self) -> datetime:
        return self.trial.created_at

    @property
    def note(self) -> str | None:
        """Why the answer is not for the asked problem itself, when it is not."""
        if self.exact:
            return None
        return (f"problem {canonical_json(self.problem)} was never tuned: answered from the "
                f"nearest tuned problem {canonical_json(self.tuned_problem)} (distance "
                f"{self.distance:g}, the sum over size parameters of |log2(asked/tuned)|)")

    def document(self) -> dict[str, Any]:
        """The answer as JSON data, in the one shape every reader gets: ``tuner best`` prints
        it, the API's ``/best`` sends it (its schema: ``tuner.api.schemas.BestOut``) and
        ``tuner export`` writes one per tuned problem."""
        trial = self.trial
        return {
            "kernel": self.kernel, "arch": self.arch, "problem": self.problem,
            "tuned_problem": self.tuned_problem, "exact": self.exact, "distance": self.distance,
            "max_error": self.max_error, "config": self.config, "latency_s": trial.median_s,
            "rel_l2": trial.rel_l2, "metrics": trial.measurement.metrics(), "note": self.note,
            "provenance": {"study": self.study, "trial": trial.number, "device": self.device,
                           "software": self.software,
                           "measured_at": self.measured_at.isoformat()},
        }


def to_json(document: Any, indent: int | None = None) -> str:
    """JSON text of a document; non-finite numbers become ``null``, as the API sends them."""
    return json.dumps(_finite(document), indent=indent, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def name_values(texts: Iterable[str], what: str, example: str) -> dict[str, str]:
    """``NAME=VALUE`` texts as a mapping of texts; a malformed one is a :class:`UsageError`
    that names ``what`` it was and shows ``example``."""
    parsed = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"malformed {what} {text!r}: write NAME=VALUE, e.g. {example}")
        parsed[name.strip()] = value.strip()
    return parsed


def parse_problem(spec: ProblemSpace | None, texts: Mapping[str, str]) -> dict[str, Any]:
    """A problem from ``NAME=VALUE`` texts, typed and completed by ``spec``'s defaults; with no
    spec (a user's template this process has not loaded), each value read as a JSON scalar
    (``128`` -> 128, ``true`` -> True, anything else the text itself)."""
    if spec is None:
        for name in texts:
            try:
                check_param_name(name, "problem parameter")
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        return {name: _json_scalar(text) for name, text in texts.items()}
    try:
        return spec.parse_problem(texts)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _json_scalar(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, bool, str)) else text


def kernel_info(spec: KernelSpec | StoredSpace) -> KernelInfo:
    return KernelInfo(
        name=spec.name, backend=spec.backend, description=spec.description,
        archs=list(spec.archs),
        params=[ParamInfo(p.name, list(p.choices), p.doc) for p in spec.params],
        problem_params=[ProblemParamInfo(p.name, p.kind.__name__, p.default,
                                         list(p.choices) if p.choices is not None else None,
                                         p.minimum, p.doc) for p in spec.problem_params],
        space_size=spec.space_size())


class Service:
    """Read-side answers over one Store, as plain records."""

    def __init__(self, store: Store):
        self._store = store

    def kernels(self) -> list[KernelInfo]:
        """The built-in templates, then the kernels of users' templates that studies stored."""
        return [kernel_info(spec) for spec in builtin_specs()] + [kernel_info(s) for s in self.stored_kernels()]

    def stored_kernels(self) -> list[StoredSpace]:
        """The kernels of users' templates, as their newest studies stored them."""
        builtin = {(spec.name, spec.backend) for spec in builtin_specs()}
        return [StoredSpace(name, backend, space) for name, backend, space in self._store.kernel_spaces()
                if (name, backend) not in builtin]

    def problem_space(self, kernel: str, arch: str) -> ProblemSpace | None:
        """The problem parameters of ``kernel`` on ``arch``'s backend: the built-in template's, or
        those a study of a user's template stored; ``None`` when neither knows the kernel."""
        builtin = _builtin(kernel, arch)
        if builtin is not None:
            return builtin
        backend = ARCHS[arch].backend if arch in ARCHS else None
        return next((s for s in self.stored_kernels() if s.name == kernel and s.backend == backend), None)

    def flops(self, study: StudyRecord) -> float | None:
        """The FLOP count of a study's problem: stored with it, or its built-in template's."""
        if study.flops is not None:
            return study.flops
        try:
            return find_builtin(study.kernel, study.backend).flops(study.problem)
        except SpecError:
            return None

    def problem(self, kernel: str, arch: str, texts: Mapping[str, str]) -> dict[str, Any]:
        """The problem ``texts`` (``NAME=VALUE`` values) ask of ``kernel`` on ``arch``, typed by
        its built-in spec or the space a study of a user's template stored (see
        :func:`parse_problem`)."""
        return parse_problem(self.problem_space(kernel, arch), texts)

    def write_marker(self) -> Hashable:
        """Changes whenever trials or fronts were written (inserted, updated, deleted, by any
        process) or the database was replaced, so a cache of :meth:`best` answers compares it
        to know they are stale. One primary-key lookup."""
        return self._store.change_marker()

    def studies(self) -> list[StudyRecord]:
        return self._store.studies()

    def study(self, name: str) -> StudyRecord:
        found = self._store.study(name)
        if found is None:
            raise NotFound(f"no study named {name!r} in this database: list the studies "
                           f"to find its name, or run it with `tuner run`")
        return found

    def running_trials(self, name: str) -> int:
        """Trials of the study in flight now (0: no tuner is at work on it)."""
        return self._store.running_trials(self.study(name).name)

    def trials(self, name: str, *, status: str | None = None, max_error: float | None = None,
               params: dict[str, Any] | None = None, sort: str = "number",
               descending: bool = False, offset: int = 0, limit: int = 100) -> TrialPage:
        """A page of a study's trials, filtered by status, error bound and config values.

        ``params`` values may be texts (from a URL query): they are read as the kernel's
        parameter choices, from the study's stored space (never from its template file).
        """
        study = self.study(name)
        wanted = _typed_params(study, params or {})
        try:
            return self._store.trials(study.id, status=status, max_error=max_error, params=wanted,
                                      sort=sort, descending=descending, offset=offset,
                                      limit=limit)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def front(self, name: str) -> list[TrialRecord]:
        """The study's stored Pareto front (latency vs error), fastest first."""
        return self._store.front(self.study(name).id)

    def points(self, name: str) -> list[TrialPoint]:
        """The study's ok trials with a finite latency and error: what its plots draw."""
        return self._store.points(self.study(name).id)

    def trial(self, name: str, number: int) -> TrialDetail:
        found = self._store.trial(self.study(name).id, number)
        if found is None:
            raise NotFound(f"study {name!r} has no trial {number}")
        return TrialDetail(*found)

    def best(self, *, kernel: str, arch: str, problem: dict[str, Any],
             max_error: float | None = None, family: str | None = None) -> BestAnswer:
        """The fastest ok config of ``kernel`` on ``arch`` for ``problem`` within ``max_error``
        (relative L2), from the nearest tuned problem when this one was never tuned; of one
        template family where ``family`` is given (else the fastest of every family)."""
        full = _full_problem(self.problem_space(kernel, arch), problem)
        only = _family_filter(kernel, arch, family)
        tuned, distance = full, 0.0
        trial = self._store.best_trial(kernel=kernel, arch=arch, problem=full, max_error=max_error, family=only)
        if trial is None:
            nearest = self._nearest(kernel, arch, full, max_error, only)
            if nearest is not None:
                tuned, distance = nearest
                trial = self._store.best_trial(kernel=kernel, arch=arch, problem=tuned,
                                               max_error=max_error, family=only)
        if trial is None:
            bound = "" if max_error is None else f" within max_error {max_error:g}"
            of = "" if family is None else f" of family {family!r}"
            raise NotFound(f"no ok trial{of} of kernel {kernel!r} on arch {arch}{bound} for this "
                           f"problem or one like it (same dtype and flags): tune it first "
                           f"with `tuner run`")
        return BestAnswer(kernel=kernel, arch=arch, problem=full, tuned_problem=tuned,
                          trial=trial, distance=distance, max_error=max_error)

    def _nearest(self, kernel: str, arch: str, problem: dict[str, Any], max_error: float | None,
                 family: FamilyFilter | None) -> tuple[dict[str, Any], float] | None:
        """The closest comparable tuned problem and its distance; ties go to the faster one."""
        tuned = self._store.tuned_problems(kernel=kernel, arch=arch, max_error=max_error, family=family)
        return nearest_problem(problem, ((t.problem, t.best_latency_s, t.problem) for t in tuned))


def _full_problem(space: ProblemSpace | None, problem: dict[str, Any]) -> dict[str, Any]:
    """A problem with the kernel's defaults filled in, as studies store it; a kernel known
    nowhere (a template's study stored before schema 0003) is taken as given."""
    if space is None:
        return dict(problem)
    try:
        return space.validate_problem(problem)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _family_filter(kernel: str, arch: str, family: str | None) -> FamilyFilter | None:
    """The trials of ``family``: a built-in kernel's must be one of its families on ``arch``
    (UsageError names them), and its default family's are also those naming none; a template of
    a user's, known by what is stored, has the family its configs name."""
    if family is None:
        return None
    try:
        specs = specs_for(kernel, arch)
    except SpecError:
        return FamilyFilter(family)
    names = [s.family for s in specs]
    if family not in names:
        raise UsageError(f"kernel {kernel!r} has no family {family!r} on {arch} (it has: "
                         f"{', '.join(n or '(unnamed)' for n in names)}): `tuner kernels` lists them")
    return FamilyFilter(family, unnamed=family == names[0])


def _builtin(kernel: str, arch: str) -> KernelSpec | None:
    """The built-in spec of ``kernel`` on ``arch``; ``None`` for a kernel of a user's template."""
    try:
        return problem_spec(kernel, arch)
    except SpecError:
        return None


def _config_choices(space: ProblemSpace) -> dict[str, tuple[Any, ...]]:
    """The choices of each key of a stored config: the space's knobs, every family's where it
    searches several, and ``family`` (every stored config of a kernel with families names one)."""
    choices: dict[str, tuple[Any, ...]] = {FAMILY: ()}
    family_params = getattr(space, "families", {}).values()
    for param in (*space.params, *(p for params in family_params for p in params)):
        known = choices.get(param.name, ())
        choices[param.name] = known + tuple(c for c in param.choices if c not in known)
    return choices


def _study_space(study: StudyRecord) -> ProblemSpace | None:
    """The study's parameters: stored with it (schema 0003 on), else those of the built-in
    template of its kernel; ``None`` for an older study of a user's template. A template file
    is never imported here: reading must not run code a database names."""
    if study.space is not None:
        return StoredSpace(study.kernel, study.backend, study.space)
    if study.template_path:
        return None
    try:
        return find_builtin(study.kernel, study.backend)
    except SpecError:
        return None


def _typed_params(study: StudyRecord, params: Mapping[str, Any]) -> dict[str, Any]:
    """Config filter values as the kernel's choices (``"64"`` -> ``64``) where they are known."""
    for name in params:
        try:
            check_param_name(name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    space = _study_space(study)
    if space is None:
        return dict(params)
    choices = _config_choices(space)
    typed = {}
    for name, value in params.items():
        if name not in choices:
            raise UsageError(f"kernel {study.kernel!r} has no parameter {name!r} "
                             f"(it has: {', '.join(choices)})")
        typed[name] = next((c for c in choices[name] if str(c).lower() == str(value).lower()),
                           value)
    return typed
