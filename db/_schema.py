"""The tuner schema's version: Alembic, configured in code, with its own version table.

Optuna's Alembic owns ``alembic_version`` in the same database, so ours is
``tuner_alembic_version``. Opening a store upgrades an older schema, creates a missing one
(when asked to) and refuses one newer than this code.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from ._errors import StoreError

VERSION_TABLE = "tuner_alembic_version"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant: PostgreSQL advisory lock key that serialises schema changes between processes.
_MIGRATION_LOCK = 0x7475_6E65


def include_name(name: str | None, type_: str, _parent: object) -> bool:
    """Alembic filter: only ``tuner_*`` tables are ours; Optuna's share the database."""
    return type_ != "table" or (name or "").startswith("tuner_")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for our migrations; ``env.py`` runs them on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def prepare(engine: Engine, *, create: bool, where: str, read_only: bool = False) -> None:
    """Brings the schema at ``engine`` to this code's head revision, or raises StoreError.

    ``read_only`` changes nothing: the schema must already be at the head revision.
    """
    script = scripts()
    head = script.get_current_head()
    if read_only:
        with engine.connect() as connection:
            current = current_revision(connection)
        if current != head:
            raise StoreError(f"{where} has tuner schema {current!r}, not this tuner's {head!r}: "
                             f"open it once with a tuner of this version that writes "
                             f"(`tuner studies --db URL` upgrades it)")
        return
    with engine.connect() as connection:
        _lock_schema(connection)
        current = current_revision(connection)
        if current is None and not create:
            raise StoreError(f"{where} has no tuner tables: point --db at the database a "
                             f"`tuner run` wrote, or run a study first")
        if current is not None and current not in {r.revision for r in script.walk_revisions()}:
            raise StoreError(f"{where} has tuner schema {current!r}, newer than this tuner "
                             f"(which knows up to {head!r}): upgrade tuner to open it")
        if current != head:
            command.upgrade(alembic_config(connection), "head")
        connection.commit()


def _lock_schema(connection: Connection) -> None:
    """Makes a second process opening the same fresh database wait, then find it migrated."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    elif dialect == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
