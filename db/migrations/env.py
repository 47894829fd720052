"""Alembic environment for the tuner schema (run through ``tuner.db._schema``, not a CLI).

The connection comes from ``config.attributes["connection"]``; when absent (a developer running
``alembic -c db/alembic.ini -x url=... revision --autogenerate``) one is opened from ``-x url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from tuner.db._models import Base
from tuner.db._schema import VERSION_TABLE, include_name


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      version_table=VERSION_TABLE, include_name=include_name,
                      render_as_batch=True)  # SQLite can only ALTER by copying a table
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    with create_engine(context.get_x_argument(as_dictionary=True)["url"]).begin() as connection:
        _run(connection)
