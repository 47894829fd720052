"""Engines for the tuner's database URLs: SQLite tuned for several writers, PostgreSQL as is."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ._errors import StoreError

# How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 5


def parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise StoreError(f"{url!r} is not a database URL: use sqlite:///path/to/tuner.db "
                         f"or postgresql+psycopg://user@host/dbname") from None


def safe_url(url: URL | str) -> str:
    """The URL as text with any password masked, for messages and logs."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def driver_connect_args(url: URL) -> dict[str, Any]:
    """Driver options that make a dead server or a locked file fail quickly and clearly."""
    if is_sqlite(url):
        return {"timeout": BUSY_TIMEOUT_S}
    if url.get_backend_name() == "postgresql":
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


def make_engine(url: URL, *, read_only: bool = False, **options: Any) -> Engine:
    """An engine for ``url``; with ``read_only`` every connection refuses writes."""
    try:
        engine = create_engine(url, connect_args=driver_connect_args(url), **options)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(f"no database driver for {safe_url(url)} ({exc}): install it, e.g. "
                         f"pip install 'tuner[postgres]' for postgresql+psycopg URLs") from None
    if is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas)
    if read_only:
        event.listen(engine, "connect", _sqlite_read_only if is_sqlite(url) else _pg_read_only)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The busy timeout makes a second writing process wait for the lock instead of failing at
    # once; WAL lets readers (the API, `tuner best`) run while a study writes.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    _enter_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _enter_wal(cursor: Any) -> None:
    """Switches the file to WAL once; retried because SQLite answers a switch that races another
    process's (two tuners opening a fresh file) with 'database is locked' at once, whatever the
    busy timeout."""
    if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _pg_read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cursor.close()
    dbapi_connection.commit()  # psycopg opened a transaction for the SET; keep the setting
