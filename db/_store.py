"""The Store: the only code that opens a database session.

It connects (SQLite by default, PostgreSQL for several machines), brings the schema to this
code's revision, writes studies, trials and fronts, and answers the queries the service layer
asks, always as plain records. Driver errors become :class:`StoreError` with a one-line message.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, insert, inspect, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from tuner.names import check_study_name
from tuner.pareto import evictions
from tuner.workers.measurement import Measurement

from . import _queries as queries
from ._engine import BUSY_TIMEOUT_S, is_sqlite, make_engine, parse_url, safe_url
from ._errors import StoreError
from ._keys import problem_key
from ._models import Changes, FrontMember, Kernel, Problem, SourceText, Study, Trial
from ._queries import FamilyFilter
from ._records import StudyRecord, TrialPage, TrialPoint, TrialRecord, TunedProblem
from ._schema import prepare
from ._trials import row_values, to_record

if TYPE_CHECKING:
    import optuna

SUPPORTED = ("sqlite", "postgresql")


def describe(exc: SQLAlchemyError, url: URL) -> str:
    """One line for a driver error: what failed, where (password masked), what to do."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    reason = lines[0]
    if url.password:
        reason = reason.replace(str(url.password), "***")
    where = safe_url(url)
    if "connect" in reason.lower() or "unable to open" in reason.lower():
        return (f"cannot reach database {where}: {reason}; check that the server is running "
                f"and the URL (--db or TUNER_DB) is right")
    return f"database {where} failed: {reason}; check the URL (--db or TUNER_DB) and retry"


class Store:
    """Storage of studies, trials, generated sources and Pareto fronts in one SQL database."""

    def __init__(self, url: str, parsed: URL, engine_options: Mapping[str, Any]):
        self.url = url
        self._url = parsed
        self._engine = make_engine(parsed, **engine_options)
        self._file = _sqlite_file(parsed)
        self._file_id = _file_identity(self._file)
        self._file_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, create: bool = True, read_only: bool = False,
             engine_options: Mapping[str, Any] | None = None) -> Store:
        """Connects and brings the schema to this code's revision.

        ``create=False`` is for readers: a database without tuner tables is refused rather than
        created. ``read_only=True`` (implies ``create=False``) writes nothing at all: no
        migration, and every connection refuses writes. ``engine_options`` go to
        ``sqlalchemy.create_engine`` (pool sizes, echo).
        """
        create = create and not read_only
        parsed = parse_url(url)
        if parsed.get_backend_name() not in SUPPORTED:
            raise StoreError(f"unsupported database {safe_url(parsed)}: use a sqlite:/// "
                             f"or postgresql+psycopg:// URL")
        if not create:
            _require_sqlite_file(parsed)
        store = cls(url, parsed, {**(engine_options or {}), "read_only": read_only})
        try:
            prepare(store._engine, create=create, where=safe_url(parsed), read_only=read_only)
        except SQLAlchemyError as exc:
            store.close()
            raise StoreError(describe(exc, parsed)) from None
        except StoreError:
            store.close()
            raise
        return store

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def optuna_storage(self, **kwargs: Any) -> optuna.storages.RDBStorage:
        """Optuna's storage in this same database; ``kwargs`` go to ``RDBStorage``."""
        import optuna  # slow to import; readers such as `tuner best` never need it

        if is_sqlite(self._url):
            kwargs.setdefault("engine_kwargs", {"connect_args": {"timeout": BUSY_TIMEOUT_S}})
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                return optuna.storages.RDBStorage(self.url, **kwargs)
            except SQLAlchemyError as exc:
                # Two tuners opening a fresh database race to create Optuna's tables and stamp
                # its version; the loser finds them made on its next try.
                racing = isinstance(exc, IntegrityError) or "already exists" in str(exc)
                if not racing or attempt == attempts:
                    raise StoreError(describe(exc, self._url)) from None
                time.sleep(0.5)
        raise StoreError(f"database {safe_url(self._url)} could not be opened for Optuna")

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on any error."""
        self._follow_replaced_file()
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(describe(exc, self._url)) from None

    def _follow_replaced_file(self) -> None:
        """A SQLite file replaced under a running reader (moved over, restored from a backup):
        pooled connections hold the old file open and would go on reading it, so they are
        closed and the next session opens the file now at the path."""
        if self._file is None:
            return
        current = _file_identity(self._file)
        if current is None:
            raise StoreError(f"database file {self._file} is gone: restore it, or point --db "
                             f"at the database a `tuner run` wrote")
        with self._file_lock:
            if current != self._file_id:
                self._engine.dispose()
                self._file_id = current

    # ---- writes ----

    def ensure_study(self, *, name: str, kernel: str, backend: str, template_path: str | None,
                     problem: dict[str, Any], arch: str, device_name: str, sampler: str,
                     directions: list[str], space: dict[str, Any] | None = None,
                     flops: float | None = None, bytes_moved: float | None = None,
                     template_digest: str | None = None) -> StudyRecord:
        """The study called ``name``, created with its kernel and problem rows if new.

        Safe when two processes start the same study at once. A study of that name for another
        kernel, problem or arch is refused, and so is a name that breaks
        :func:`tuner.names.check_study_name`. ``space``, ``flops`` and ``bytes_moved`` are what
        reading needs of the template (see ``KernelSpec.space``), ``template_digest`` the
        SHA-256 of the template file.
        """
        try:
            check_study_name(name)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        with self._session() as session:
            kernel_id = _get_or_create(session, Kernel, {"name": kernel, "backend": backend})
            problem_id = _get_or_create(session, Problem, {"kernel_id": kernel_id,
                                                           "key": problem_key(problem)},
                                        params=problem)
            _insert_ignore(session, Study, ["name"], name=name, kernel_id=kernel_id,
                           problem_id=problem_id, template_path=template_path, arch=arch,
                           device_name=device_name, sampler=sampler, directions=directions,
                           space=space, flops=flops, bytes_moved=bytes_moved,
                           template_digest=template_digest)
            study = session.scalars(select(Study).where(Study.name == name)).one()
            if (study.kernel_id, study.problem_id, study.arch) != (kernel_id, problem_id, arch):
                raise StoreError(f"study {name!r} already exists for another kernel, problem or "
                                 f"arch: choose another --study name")
            return queries.study_records(session, queries.study_select()
                                         .where(Study.id == study.id))[0]

    def record_trial(self, study: StudyRecord, number: int, config: dict[str, Any],
                     measurement: Measurement, source_code: str | None,
                     reused_from: int | None = None) -> TrialRecord:
        """Stores trial ``number`` of ``study``; if it is already stored, returns that row."""
        source_hash = measurement.source_hash or None
        with self._session() as session:
            if source_code is not None and source_hash is not None:
                _insert_ignore(session, SourceText, ["hash"], hash=source_hash, code=source_code)
            _insert_ignore(session, Trial, ["study_id", "number"],
                           **row_values(study.id, number, config, measurement, reused_from))
            row = session.execute(queries.trial_select().where(
                Trial.study_id == study.id, Trial.number == number)).one()
            return to_record(row)

    def offer_to_front(self, study_id: int, trial: TrialRecord) -> bool:
        """Offers a measured trial (ok, with a latency and an error) of study ``study_id`` to
        its stored front: it joins unless a member dominates it, and evicts the members it
        dominates; whether it joined. The work is the front's size, not the study's.

        A source measured twice counts once: a trial whose source an earlier stored, measured
        trial of the study has does not join. One transaction under the study's lock, so tuners
        sharing a study take turns.
        """
        with self._session() as session:
            _lock_study(session, study_id)
            twin = session.scalar(select(Trial.id).where(
                Trial.study_id == study_id, Trial.id < trial.id,
                Trial.source_hash == trial.source_hash, *queries.measured()).limit(1))
            if twin is not None:
                return False
            front = queries.front_trials(session, study_id)
            evicted = evictions((trial.median_s, trial.rel_l2),
                                np.array([[t.median_s, t.rel_l2] for t in front]))
            if evicted is None:
                return False
            gone = [t.id for t, out in zip(front, evicted, strict=True) if out]
            if gone:
                session.execute(delete(FrontMember).where(FrontMember.study_id == study_id,
                                                          FrontMember.trial_id.in_(gone)))
            session.execute(insert(FrontMember), [{"study_id": study_id, "trial_id": trial.id}])
            return True

    def set_front(self, study_id: int, trial_ids: list[int]) -> None:
        """Replaces the stored front of a study by ``trial_ids`` (trials of that study)."""
        ids = set(trial_ids)
        with self._session() as session:
            _lock_study(session, study_id)
            found = session.scalar(select(func.count()).select_from(Trial).where(
                Trial.study_id == study_id, Trial.id.in_(ids)))
            if found != len(ids):
                raise ValueError(f"set_front: some of trials {sorted(ids)} are not in study {study_id}")
            session.execute(delete(FrontMember).where(FrontMember.study_id == study_id))
            if ids:
                session.execute(insert(FrontMember),
                                [{"study_id": study_id, "trial_id": i} for i in sorted(ids)])

    # ---- reads for the tuner ----

    def find_measured(self, *, kernel: str, problem: dict[str, Any], arch: str,
                      source_hash: str, env_key: str) -> TrialRecord | None:
        """An ok trial of the same source, problem and arch measured on the same device and
        software (``env_key``), to reuse instead of measuring again; ``None`` if there is none."""
        with self._session() as session:
            return queries.measured_before(session, kernel=kernel, problem_key=problem_key(problem),
                                           arch=arch, source_hash=source_hash, env_key=env_key)

    def study_trials_for_front(self, study_id: int) -> list[TrialRecord]:
        """Ok trials with a latency and an error, in trial order."""
        with self._session() as session:
            return queries.measured_trials(session, study_id)

    def unbeaten_running_trials(self, study_name: str, started_before: datetime) -> list[int]:
        """Optuna trial ids of ``study_name`` RUNNING with no heartbeat at all, started before
        ``started_before`` (Optuna's local time): asked by a tuner killed before its first beat.
        Optuna's stale check skips trials that never beat, so these would stay RUNNING forever.

        One of the two places that read Optuna's own tables (``studies``, ``trials``,
        ``trial_heartbeats``) in SQL, and why: Optuna's public API cannot tell whether a trial
        ever beat (its storage keeps that private to ``fail_stale_trials``). Everything else
        but :meth:`running_trials` goes through Optuna's public API (``tuner.proposer``)."""
        orphans = text("SELECT t.trial_id, t.datetime_start FROM trials t "
                       "JOIN studies s ON s.study_id = t.study_id "
                       "WHERE s.study_name = :name AND t.state = 'RUNNING' AND NOT EXISTS "
                       "(SELECT 1 FROM trial_heartbeats h WHERE h.trial_id = t.trial_id)")
        with self._session() as session:
            rows = session.execute(orphans, {"name": study_name}).all()
        return [trial_id for trial_id, start in rows
                if start is not None and _as_datetime(start) < started_before]

    def running_trials(self, study_name: str) -> int:
        """How many of the study's trials Optuna holds RUNNING: trials in flight, so a tuner is
        at work on it (or was killed, until the next tuner fails its stale trials).

        The other place that reads Optuna's tables in SQL, and why: the server asks this on
        every refresh of a study page, and Optuna's public API would have it build an
        ``RDBStorage``, which creates Optuna's tables in a database it only reads."""
        running = text("SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                       "WHERE s.study_name = :name AND t.state = 'RUNNING'")
        with self._session() as session:
            if not inspect(session.connection()).has_table("trials"):
                return 0  # no study was ever run here: Optuna's tables are made by the first
            return session.scalar(running, {"name": study_name}) or 0

    # ---- reads for tuner.service ----

    def change_marker(self) -> tuple[Any, ...]:
        """Differs whenever a trial or front member was inserted, updated or deleted since the
        last call, by any process, and when the database file was replaced by another: (the
        SQLite file's identity, the database's token, its change counter). The counter is
        bumped by triggers in the writing transaction itself, so it moves exactly when a write
        becomes visible, whatever order transactions commit in. One primary-key read."""
        with self._session() as session:
            token, counter = session.execute(
                select(Changes.token, Changes.counter).where(Changes.id == 1)).one()
        return (self._file_id, token, counter)

    def studies(self) -> list[StudyRecord]:
        with self._session() as session:
            return queries.study_records(session, queries.study_select())

    def kernel_spaces(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(kernel, backend, space) of every kernel a study stored a space for, the newest
        study's space of each: a template file's kernels, known by name alone."""
        with self._session() as session:
            return queries.kernel_spaces(session)

    def study(self, name: str) -> StudyRecord | None:
        with self._session() as session:
            found = queries.study_records(session, queries.study_select().where(Study.name == name))
            return found[0] if found else None

    def trials(self, study_id: int, *, status: str | None = None, max_error: float | None = None,
               params: Mapping[str, Any] | None = None, sort: str = "number",
               descending: bool = False, offset: int = 0, limit: int = 100) -> TrialPage:
        """A page of a study's trials; ValueError for an unknown sort or a bad filter."""
        filters = queries.trial_filters(study_id, status, max_error, params)
        with self._session() as session:
            return queries.trial_page(session, filters, sort=sort, descending=descending,
                                      offset=offset, limit=limit)

    def front(self, study_id: int) -> list[TrialRecord]:
        """The stored front, fastest first."""
        with self._session() as session:
            return queries.front_trials(session, study_id)

    def points(self, study_id: int) -> list[TrialPoint]:
        """The study's measured trials (finite latency and error) as plot points, in trial order."""
        with self._session() as session:
            return queries.measured_points(session, study_id)

    def trial(self, study_id: int, number: int) -> tuple[TrialRecord, str | None] | None:
        """A trial and its generated source text (``None`` when it was never stored)."""
        with self._session() as session:
            row = session.execute(queries.trial_select().where(
                Trial.study_id == study_id, Trial.number == number)).first()
            if row is None:
                return None
            trial = to_record(row)
            code = session.get(SourceText, trial.source_hash) if trial.source_hash else None
            return trial, code.code if code else None

    def best_trial(self, *, kernel: str, arch: str, problem: Mapping[str, Any],
                   max_error: float | None = None, family: FamilyFilter | None = None) -> TrialRecord | None:
        """The fastest ok trial of ``kernel`` on ``arch`` for exactly ``problem`` (of one family
        where ``family`` is given)."""
        with self._session() as session:
            return queries.best_trial(session, kernel=kernel, arch=arch, problem_key=problem_key(problem),
                                      max_error=max_error, family=family)

    def tuned_problems(self, *, kernel: str, arch: str, max_error: float | None = None,
                       family: FamilyFilter | None = None) -> list[TunedProblem]:
        """Every problem of ``kernel`` with an ok trial on ``arch`` within ``max_error`` (of one
        family where ``family`` is given)."""
        with self._session() as session:
            return queries.tuned_problems(session, kernel=kernel, arch=arch, max_error=max_error,
                                          family=family)


def _sqlite_file(url: URL) -> Path | None:
    path = url.database
    return Path(path) if is_sqlite(url) and path and path != ":memory:" else None


def _file_identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``: a file moved over it has another."""
    if path is None:
        return None
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino)


def _require_sqlite_file(url: URL) -> None:
    """Connecting to a missing SQLite file creates it: a reader must say it is missing instead."""
    path = url.database
    if is_sqlite(url) and path and path != ":memory:" and not Path(path).is_file():
        raise StoreError(f"no database file {path}: pass --db with the database a `tuner run` "
                         f"wrote, or run a study first")


def _insert_ignore(session: Session, model: type, keys: list[str], **values: Any) -> None:
    """INSERT that does nothing when a row with the same ``keys`` exists (another process won)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(model).values(**values).on_conflict_do_nothing(index_elements=keys))


def _get_or_create(session: Session, model: type[Kernel] | type[Problem], keys: dict[str, Any],
                   **extra: Any) -> int:
    _insert_ignore(session, model, list(keys), **keys, **extra)
    return session.scalars(select(model.id).filter_by(**keys)).one()


def _lock_study(session: Session, study_id: int) -> None:
    """Holds the study's lock to the end of the transaction, so that tuners writing one study's
    front take turns: a write to its row locks the row on PostgreSQL and, as the transaction's
    first write, the database on SQLite (whose reads take no lock)."""
    session.execute(update(Study).where(Study.id == study_id).values(sampler=Study.sampler)
                    .execution_options(synchronize_session=False))


def _as_datetime(value: datetime | str) -> datetime:
    """SQLite hands Optuna's timestamps back as text."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
