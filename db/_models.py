"""SQLAlchemy models: one class per table, every table prefixed ``tuner_``.

The prefix keeps our tables apart from Optuna's, which live in the same database so that
``optuna.load_study(storage=url)`` and optuna-dashboard open our studies. Changing a model
needs a new Alembic revision in ``migrations/versions``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, get_args, get_type_hints

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tuner.enums import Status
from tuner.workers.measurement import Measurement, Timing

# JSONB on PostgreSQL so config filters compare values, plain JSON text elsewhere.
JsonDict = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Kernel(Base):
    __tablename__ = "tuner_kernels"
    __table_args__ = (UniqueConstraint("name", "backend", name="uq_tuner_kernels_name_backend"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    backend: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Problem(Base):
    """A problem instance of a kernel; ``key`` is its canonical JSON, the lookup key."""

    __tablename__ = "tuner_problems"
    __table_args__ = (UniqueConstraint("kernel_id", "key", name="uq_tuner_problems_kernel_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kernel_id: Mapped[int] = mapped_column(ForeignKey("tuner_kernels.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(2000))
    params: Mapped[dict[str, Any]] = mapped_column(JsonDict)


class Study(Base):
    __tablename__ = "tuner_studies"
    __table_args__ = (Index("ix_tuner_studies_problem_arch", "problem_id", "arch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(500), unique=True)
    kernel_id: Mapped[int] = mapped_column(ForeignKey("tuner_kernels.id", ondelete="CASCADE"))
    problem_id: Mapped[int] = mapped_column(ForeignKey("tuner_problems.id", ondelete="CASCADE"))
    template_path: Mapped[str | None] = mapped_column(String(2000))
    # What reading needs of the template (KernelSpec.space()) and the problem's FLOP and byte
    # counts, stored at creation so no reader imports the template (None before schema 0003).
    space: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    flops: Mapped[float | None] = mapped_column(Double)
    bytes_moved: Mapped[float | None] = mapped_column(Double)
    template_digest: Mapped[str | None] = mapped_column(String(64))  # SHA-256 of the file (schema 0004)
    arch: Mapped[str] = mapped_column(String(40))
    device_name: Mapped[str] = mapped_column(String(200))
    sampler: Mapped[str] = mapped_column(String(100))
    directions: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Changes(Base):
    """One row: a token naming this database and a counter that database triggers bump in the
    same transaction as every write to ``tuner_trials`` and ``tuner_front`` (migration 0004)."""

    __tablename__ = "tuner_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(32))
    counter: Mapped[int] = mapped_column(BigInteger)


class SourceText(Base):
    """Generated kernel sources, stored once per content hash however many trials share them."""

    __tablename__ = "tuner_sources"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[str] = mapped_column(Text)


class Trial(Base):
    """One trial of a study. Unique on (study, number) so two processes cannot store it twice.

    The measured columns are named as :meth:`tuner.workers.measurement.Measurement.flat` names
    its values (``_trials`` maps the two); ``extra`` holds the open ones.
    """

    __tablename__ = "tuner_trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number", name="uq_tuner_trials_study_number"),
        # best(), the front and latency sorts: ok trials of a study in latency order.
        Index("ix_tuner_trials_study_status_latency", "study_id", "status", "median_s"),
        # reuse lookups: an ok trial of this source on this device and software.
        Index("ix_tuner_trials_source_env", "source_hash", "env_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("tuner_studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JsonDict)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    # The measured numbers that queries sort and filter by; the others follow the class.
    median_s: Mapped[float | None] = mapped_column(Double)
    rel_l2: Mapped[float | None] = mapped_column(Double)
    compile_time_s: Mapped[float | None] = mapped_column(Double)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON)
    env_key: Mapped[str] = mapped_column(String(64))
    source_hash: Mapped[str | None] = mapped_column(String(64))
    log: Mapped[str] = mapped_column(Text, default="")
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    reused_from: Mapped[int | None] = mapped_column(
        ForeignKey("tuner_trials.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _measured_numbers(declared: Iterable[str]) -> dict[str, Any]:
    """A nullable column for each number a :class:`Measurement` holds (its own and its timing's)
    that ``Trial`` does not declare, typed from the field: a metric added to the measurement
    gets its column here, and needs only its migration."""
    types: dict[type, Any] = {float: Double, int: Integer}
    hints = get_type_hints(Timing) | get_type_hints(Measurement)
    columns = {}
    for name in Measurement(0, Status.OK, None).flat():
        if name in declared:
            continue
        kind = next(t for t in get_args(hints[name]) or (hints[name],) if t is not type(None))
        if kind not in types:
            raise TypeError(f"Measurement.{name} is a {kind}: declare its column in Trial")
        columns[name] = mapped_column(name, types[kind], nullable=True)
    return columns


for _name, _column in _measured_numbers(Trial.__table__.columns.keys()).items():
    setattr(Trial, _name, _column)


class FrontMember(Base):
    """A trial on its study's stored Pareto front (latency vs error)."""

    __tablename__ = "tuner_front"

    study_id: Mapped[int] = mapped_column(
        ForeignKey("tuner_studies.id", ondelete="CASCADE"), primary_key=True)
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("tuner_trials.id", ondelete="CASCADE"), primary_key=True)
