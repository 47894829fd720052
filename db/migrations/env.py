"""Alembic environment for the tuner schema (run through ``tuner.db.schema``, not a CLI).

The connection comes from ``config.attributes["connection"]``; when absent (a developer running
``alembic -c db/alembic.ini -x url=... revision --autogenerate``) one is opened from ``-x url``.
Only ``tuner_*`` tables are ours: Optuna's tables in the same database are left alone.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from tuner.db.models import Base
from tuner.db.schema import VERSION_TABLE


def _ours(name: str | None, type_: str, _parent: object) -> bool:
    return type_ != "table" or (name or "").startswith("tuner_")


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      version_table=VERSION_TABLE, include_name=_ours,
                      render_as_batch=True)  # SQLite can only ALTER by copying a table
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    with create_engine(context.get_x_argument(as_dictionary=True)["url"]).begin() as connection:
        _run(connection)
