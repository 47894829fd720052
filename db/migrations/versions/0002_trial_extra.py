"""Trials gain ``extra``: the open field of per-trial metrics beyond the measured columns.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


# Plain ALTER TABLE on SQLite too, not a batch copy of the table: dropping the old copy would
# cascade into tuner_front (foreign keys are on) and empty every stored front.


def upgrade() -> None:
    op.add_column("tuner_trials", sa.Column("extra", sa.JSON(), nullable=False,
                                            server_default=sa.text("'{}'")))


def downgrade() -> None:
    op.drop_column("tuner_trials", "extra")
