"""Database fixtures for any test: a fresh database URL on SQLite and on the real PostgreSQL.

Register with ``pytest_plugins = ["tests.db_fixtures"]``. PostgreSQL gets one uniquely named
database per test session (CREATE DATABASE, dropped at the end) and one schema per test, so
each test starts empty without paying for a database each. ``TUNER_TEST_PG_URL`` names the
server (default: the local one, trust auth).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from tests.conftest import require
from tuner.db import Store
from tuner.enums import Status
from tuner.workers.measurement import Measurement, Timing

PG_SERVER_URL = os.environ.get("TUNER_TEST_PG_URL",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _admin(url: URL):
    return create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[URL]:
    """A database of this test session on the PostgreSQL server, dropped afterwards."""
    server = make_url(PG_SERVER_URL)
    name = f"tuner_test_{uuid.uuid4().hex[:12]}"
    admin = _admin(server)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        require(False, f"PostgreSQL at {server.render_as_string(hide_password=True)} is not "
                       f"reachable ({str(exc.orig).strip().splitlines()[0]}); set TUNER_TEST_PG_URL")
    yield server.set(database=name)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_database_url: URL) -> Iterator[str]:
    """The session's PostgreSQL database seen through a fresh, empty schema of this test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin(pg_database_url)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = pg_database_url.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A URL of an empty database: a SQLite file, then the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tuner.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        yield opened


def measurement(*, status: Status = Status.OK, median_s: float | None = 1e-3,
                rel_l2: float | None = 1e-4, source_hash: str = "a" * 64,
                environment: dict[str, Any] | None = None, reason: str | None = None,
                extra: dict[str, Any] | None = None) -> Measurement:
    """A real Measurement as a worker returns it; ``median_s=None`` means nothing was timed."""
    timing = None if median_s is None else Timing(
        median_s=median_s, q1_s=median_s * 0.95, q3_s=median_s * 1.1, min_s=median_s * 0.9,
        max_s=median_s * 1.5, mean_s=median_s * 1.02, repeats=50, clock_mhz=1980.0)
    return Measurement(
        trial_id=0, status=status, source_hash=source_hash, timing=timing, rel_l2=rel_l2,
        max_abs=None if rel_l2 is None else rel_l2 * 3, compile_time_s=0.25,
        resources={"registers": 96},
        environment=environment or {"host": "node1", "device": "NVIDIA H100", "nvcc": "12.6"},
        reason=reason, log="ptxas info: 96 registers", extra=extra or {})
