"""Initial schema: kernels, problems, studies, sources, trials and the stored Pareto front."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None

# Spelled out here, not imported from the models: a migration must not change when they do.
JSON_DICT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def _timing_columns() -> list[sa.Column]:
    names = ("median_s", "q1_s", "q3_s", "min_s", "max_s", "mean_s")
    return [sa.Column(name, sa.Double(), nullable=True) for name in names]


def upgrade() -> None:
    op.create_table(
        "tuner_kernels", _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("backend", sa.String(20), nullable=False),
        _created_at(),
        sa.UniqueConstraint("name", "backend", name="uq_tuner_kernels_name_backend"))
    op.create_table(
        "tuner_sources",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("code", sa.Text(), nullable=False))
    op.create_table(
        "tuner_problems", _id(),
        sa.Column("kernel_id", sa.Integer(),
                  sa.ForeignKey("tuner_kernels.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(2000), nullable=False),
        sa.Column("params", JSON_DICT, nullable=False),
        sa.UniqueConstraint("kernel_id", "key", name="uq_tuner_problems_kernel_key"))
    op.create_table(
        "tuner_studies", _id(),
        sa.Column("name", sa.String(500), nullable=False, unique=True),
        sa.Column("kernel_id", sa.Integer(),
                  sa.ForeignKey("tuner_kernels.id", ondelete="CASCADE"), nullable=False),
        sa.Column("problem_id", sa.Integer(),
                  sa.ForeignKey("tuner_problems.id", ondelete="CASCADE"), nullable=False),
        sa.Column("template_path", sa.String(2000), nullable=True),
        sa.Column("arch", sa.String(40), nullable=False),
        sa.Column("device_name", sa.String(200), nullable=False),
        sa.Column("sampler", sa.String(100), nullable=False),
        sa.Column("directions", sa.JSON(), nullable=False),
        _created_at())
    op.create_index("ix_tuner_studies_problem_arch", "tuner_studies", ["problem_id", "arch"])
    op.create_table(
        "tuner_trials", _id(),
        sa.Column("study_id", sa.Integer(),
                  sa.ForeignKey("tuner_studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("config", JSON_DICT, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        *_timing_columns(),
        sa.Column("repeats", sa.Integer(), nullable=True),
        sa.Column("clock_mhz", sa.Double(), nullable=True),
        sa.Column("rel_l2", sa.Double(), nullable=True),
        sa.Column("max_abs", sa.Double(), nullable=True),
        sa.Column("compile_time_s", sa.Double(), nullable=True),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("env_key", sa.String(64), nullable=False),
        sa.Column("source_hash", sa.String(64), nullable=True),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("reused_from", sa.Integer(),
                  sa.ForeignKey("tuner_trials.id", ondelete="SET NULL"), nullable=True),
        _created_at(),
        sa.UniqueConstraint("study_id", "number", name="uq_tuner_trials_study_number"))
    op.create_index("ix_tuner_trials_study_status_latency", "tuner_trials",
                    ["study_id", "status", "median_s"])
    op.create_index("ix_tuner_trials_source_env", "tuner_trials", ["source_hash", "env_key"])
    op.create_table(
        "tuner_front",
        sa.Column("study_id", sa.Integer(),
                  sa.ForeignKey("tuner_studies.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("trial_id", sa.Integer(),
                  sa.ForeignKey("tuner_trials.id", ondelete="CASCADE"), primary_key=True))


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in ("tuner_front", "tuner_trials", "tuner_studies", "tuner_problems",
                  "tuner_sources", "tuner_kernels"):
        op.drop_table(table)
