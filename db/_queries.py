"""Read queries over the tuner tables, and the conversion of their rows into records.

Every function takes an open session from :class:`tuner.db.Store`, which owns sessions,
transactions and error handling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from tuner.enums import Status, TrialSort

from ._models import FrontMember, Kernel, Problem, Study, Trial
from ._records import StudyRecord, TrialPage, TrialPoint, TrialRecord, TunedProblem
from ._trials import to_record, utc

OK = Status.OK.value
# The columns of the sort orders; ties always break on the trial number.
TRIAL_SORTS: dict[TrialSort, Any] = {
    TrialSort.NUMBER: Trial.number,
    TrialSort.LATENCY: Trial.median_s,
    TrialSort.ERROR: Trial.rel_l2,
    TrialSort.COMPILE_TIME: Trial.compile_time_s,
    TrialSort.CREATED: Trial.created_at,
}


# ---- trials ----

def _on_front() -> Any:
    return exists().where(FrontMember.study_id == Trial.study_id,
                          FrontMember.trial_id == Trial.id).correlate(Trial).label("on_front")


def trial_select() -> Select:
    """Trials with their study's name and whether they are on its stored front."""
    return select(Trial, Study.name, _on_front()).join(Study, Study.id == Trial.study_id)


def config_equals(name: str, value: Any) -> ColumnElement[bool]:
    """``config[name] == value``, compared as the value's JSON type on SQLite and PostgreSQL."""
    element = Trial.config[name]
    if isinstance(value, bool):  # before int: bool is an int subclass
        return element.as_boolean() == value
    if isinstance(value, int):
        return element.as_integer() == value
    if isinstance(value, float):
        return element.as_float() == value
    if isinstance(value, str):
        return element.as_string() == value
    raise ValueError(f"config filter {name}={value!r}: values must be numbers, booleans or text")


def trial_filters(study_id: int, status: str | None, max_error: float | None,
                  params: Mapping[str, Any] | None) -> list[ColumnElement[bool]]:
    filters = [Trial.study_id == study_id]
    if status is not None:
        filters.append(Trial.status == status)
    if max_error is not None:
        filters.append(Trial.rel_l2 <= max_error)
    filters.extend(config_equals(k, v) for k, v in (params or {}).items())
    return filters


def trial_page(session: Session, filters: Sequence[ColumnElement[bool]], *, sort: str,
               descending: bool, offset: int, limit: int) -> TrialPage:
    """One page, paged and sorted in SQL (studies hold thousands of trials); missing values last."""
    try:
        column = TRIAL_SORTS[TrialSort(sort)]
    except ValueError:
        raise ValueError(f"cannot sort trials by {sort!r}: use one of "
                         f"{', '.join(s.value for s in TrialSort)}") from None
    if offset < 0 or limit < 1:
        raise ValueError(f"offset must be >= 0 and limit >= 1 (got offset={offset}, limit={limit})")
    order = (column.desc() if descending else column.asc()).nulls_last()
    total = session.scalar(select(func.count()).select_from(Trial).where(*filters)) or 0
    rows = session.execute(trial_select().where(*filters)
                           .order_by(order, Trial.number).offset(offset).limit(limit))
    return TrialPage(items=[to_record(r) for r in rows], total=total, offset=offset, limit=limit)


def front_trials(session: Session, study_id: int) -> list[TrialRecord]:
    rows = session.execute(trial_select()
                           .join(FrontMember, and_(FrontMember.study_id == Trial.study_id,
                                                   FrontMember.trial_id == Trial.id))
                           .where(Trial.study_id == study_id)
                           .order_by(Trial.median_s, Trial.number))
    return [to_record(r) for r in rows]


def measured() -> list[ColumnElement[bool]]:
    """Ok trials with both a latency and an error: the points a Pareto front is made of."""
    return [Trial.status == OK, Trial.median_s.is_not(None), Trial.rel_l2.is_not(None)]


def measured_trials(session: Session, study_id: int) -> list[TrialRecord]:
    rows = session.execute(trial_select().where(Trial.study_id == study_id, *measured())
                           .order_by(Trial.number))
    return [to_record(r) for r in rows]


def measured_points(session: Session, study_id: int) -> list[TrialPoint]:
    """Ok trials with a finite latency and error, in trial order, read as plain column rows
    (no ORM objects: a study of 10,000 trials reads several times faster)."""
    rows = session.execute(
        select(Trial.number, Trial.median_s, Trial.rel_l2, Trial.config, _on_front())
        .where(Trial.study_id == study_id, Trial.status == OK,
               Trial.median_s < math.inf, Trial.rel_l2 < math.inf)  # NULL, inf and NaN fail
        .order_by(Trial.number))
    return [TrialPoint(number, median, error, config, bool(front))
            for number, median, error, config, front in rows]


# ---- best configs ----

def _studies_of(kernel: str, arch: str, problem_key: str | None = None) -> Select:
    """Ids of the studies of ``kernel`` on ``arch`` (for one problem when given).

    Queries filter trials with ``study_id IN (this)`` rather than joining: planners (SQLite's
    without statistics, above all) then walk the (study, status, latency) index of the few
    matching studies instead of scanning every trial.
    """
    query = (select(Study.id).join(Kernel, Kernel.id == Study.kernel_id)
             .where(Kernel.name == kernel, Study.arch == arch))
    if problem_key is not None:
        query = query.join(Problem, Problem.id == Study.problem_id).where(Problem.key == problem_key)
    return query


@dataclass(frozen=True)
class FamilyFilter:
    """Trials of one template family: configs whose ``family`` is ``name`` and, where ``unnamed``
    (``name`` is the kernel's default family), configs naming none (stored before it had several)."""

    name: str
    unnamed: bool = False

    def condition(self) -> ColumnElement[bool]:
        named = Trial.config["family"].as_string()
        return or_(named == self.name, named.is_(None)) if self.unnamed else named == self.name


def _ok_within(max_error: float | None, family: FamilyFilter | None = None) -> list[ColumnElement[bool]]:
    filters = [Trial.status == OK, Trial.median_s.is_not(None)]
    if max_error is not None:
        filters.append(Trial.rel_l2 <= max_error)
    if family is not None:
        filters.append(family.condition())
    return filters


def _study_best(column: Any, max_error: float | None, family: FamilyFilter | None) -> Any:
    """``column`` of the fastest ok trial within ``max_error`` (of ``family`` where given) of the
    enclosing query's study.

    One walk down the study's (status, latency) index that stops at the first trial within the
    bound: the cost does not grow with the study's size.
    """
    return (select(column).where(Trial.study_id == Study.id, *_ok_within(max_error, family))
            .order_by(Trial.median_s).limit(1).correlate(Study).scalar_subquery())


def best_trial(session: Session, *, kernel: str, arch: str, problem_key: str,
               max_error: float | None, family: FamilyFilter | None = None) -> TrialRecord | None:
    """The fastest ok trial of ``kernel`` on ``arch`` for one problem, in one query: the best
    of each of the problem's (few) studies, then the fastest of those."""
    per_study = (select(_study_best(Trial.id, max_error, family))
                 .where(Study.id.in_(_studies_of(kernel, arch, problem_key))))
    query = (trial_select().where(Trial.id.in_(per_study))
             .order_by(Trial.median_s, Trial.id).limit(1))
    row = session.execute(query).first()
    return to_record(row) if row else None


def tuned_problems(session: Session, *, kernel: str, arch: str, max_error: float | None,
                   family: FamilyFilter | None = None) -> list[TunedProblem]:
    """Problems of ``kernel`` tuned on ``arch``, each with its best latency within the bound (of
    ``family`` where given)."""
    studies = (select(Study.problem_id, _study_best(Trial.median_s, max_error, family).label("best"))
               .where(Study.id.in_(_studies_of(kernel, arch))).subquery())
    # Grouping by the primary key lets PostgreSQL select the row's other columns too.
    query = (select(Problem.id, Problem.params, func.min(studies.c.best))
             .join(studies, studies.c.problem_id == Problem.id)
             .where(studies.c.best.is_not(None)).group_by(Problem.id))
    return [TunedProblem(problem_id=pid, problem=dict(params), best_latency_s=latency)
            for pid, params, latency in session.execute(query)]


def measured_before(session: Session, *, kernel: str, problem_key: str, arch: str,
                    source_hash: str, env_key: str) -> TrialRecord | None:
    """The first ok trial of this source, problem and arch on the same device and software."""
    query = (trial_select()
             .where(Trial.source_hash == source_hash, Trial.env_key == env_key,
                    Trial.status == OK,
                    Trial.study_id.in_(_studies_of(kernel, arch, problem_key)))
             .order_by(Trial.id).limit(1))
    row = session.execute(query).first()
    return to_record(row) if row else None


# ---- studies ----

def study_select() -> Select:
    return (select(Study, Kernel.name, Kernel.backend, Problem.params)
            .join(Kernel, Kernel.id == Study.kernel_id)
            .join(Problem, Problem.id == Study.problem_id))


def study_records(session: Session, query: Select) -> list[StudyRecord]:
    """Studies of ``query`` (a :func:`study_select`) with trial counts and best latencies."""
    rows = session.execute(query.order_by(Study.id)).all()
    ids = [row[0].id for row in rows]
    counts: dict[int, dict[str, int]] = {i: {} for i in ids}
    for study_id, status, n in session.execute(
            select(Trial.study_id, Trial.status, func.count())
            .where(Trial.study_id.in_(ids)).group_by(Trial.study_id, Trial.status)):
        counts[study_id][status] = n
    best = dict(session.execute(
        select(Trial.study_id, func.min(Trial.median_s))
        .where(Trial.study_id.in_(ids), Trial.status == OK).group_by(Trial.study_id)).all())
    return [_to_study(row, counts[row[0].id], best.get(row[0].id)) for row in rows]


def _to_study(row: Any, counts: dict[str, int], best_latency_s: float | None) -> StudyRecord:
    study, kernel, backend, problem = row
    return StudyRecord(
        id=study.id, name=study.name, kernel=kernel, backend=backend,
        template_path=study.template_path, problem=dict(problem), arch=study.arch,
        device_name=study.device_name, sampler=study.sampler, directions=list(study.directions),
        created_at=utc(study.created_at), counts=counts, best_latency_s=best_latency_s,
        space=study.space, flops=study.flops, bytes_moved=study.bytes_moved,
        template_digest=study.template_digest)


def kernel_spaces(session: Session) -> list[tuple[str, str, dict[str, Any]]]:
    """(kernel, backend, space) per kernel with a stored space, from its newest such study."""
    newest = (select(func.max(Study.id)).where(Study.space.is_not(None))
              .group_by(Study.kernel_id).scalar_subquery())
    rows = session.execute(select(Kernel.name, Kernel.backend, Study.space)
                           .join(Kernel, Kernel.id == Study.kernel_id)
                           .where(Study.id.in_(newest)).order_by(Kernel.name, Kernel.backend))
    return [(name, backend, dict(space)) for name, backend, space in rows]
