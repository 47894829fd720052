"""The template's digest, and a change counter the database keeps itself.

* ``tuner_studies.template_digest``: the SHA-256 of the template file a study was created from
  (its space, stored by 0003, is what reading needs; the digest says which version it was).
* ``tuner_changes``: one row, a random token naming this database and a counter that triggers
  bump in the same transaction as every insert, update or delete of trials and front members,
  whoever writes them (a tuner, a hand-written DELETE). A cache of answers compares the pair.
  A later migration that rebuilds either table on SQLite (batch mode copies it) must create
  its triggers again.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

WATCHED = ("tuner_trials", "tuner_front")
BUMP = "UPDATE tuner_changes SET counter = counter + 1 WHERE id = 1"
PG_FUNCTION = "tuner_bump_changes"


def upgrade() -> None:
    op.add_column("tuner_studies", sa.Column("template_digest", sa.String(64), nullable=True))
    op.create_table(
        "tuner_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False))
    op.execute(sa.text("INSERT INTO tuner_changes (id, token, counter) VALUES (1, :token, 0)")
               .bindparams(token=uuid.uuid4().hex))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
        for table in WATCHED:
            op.execute(f"CREATE TRIGGER {table}_changes AFTER INSERT OR UPDATE OR DELETE OR "
                       f"TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()")
    else:  # SQLite: row triggers only, one per kind of write
        for table in WATCHED:
            for event in ("INSERT", "UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_changes_{event.lower()} AFTER {event} ON "
                           f"{table} BEGIN {BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER {table}_changes ON {table}")
        op.execute(f"DROP FUNCTION {PG_FUNCTION}()")
    else:
        for table in WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_changes_{event}")
    op.drop_table("tuner_changes")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): copying the table instead would, with
    # foreign keys on, delete every trial of every study through the cascade.
    op.drop_column("tuner_studies", "template_digest")
