"""What reading a study needs of its template, stored with the study.

``tuner_studies.space``: the template's description, archs, parameters (names, choices, docs)
and problem parameters (``KernelSpec.space()``); ``flops`` and ``bytes_moved``: the study's
problem's counts. With them a study of a user's template is answered by its kernel's name alone
(``tuner best --kernel``, ``/best`` with a partial shape, ``tuner kernels``, throughput in
``tuner show``), and no reader imports a template file.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("tuner_studies", sa.Column("space", sa.JSON(), nullable=True))
    op.add_column("tuner_studies", sa.Column("flops", sa.Double(), nullable=True))
    op.add_column("tuner_studies", sa.Column("bytes_moved", sa.Double(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): copying the table instead would, with
    # foreign keys on, delete every trial of every study through the cascade.
    op.drop_column("tuner_studies", "bytes_moved")
    op.drop_column("tuner_studies", "flops")
    op.drop_column("tuner_studies", "space")
