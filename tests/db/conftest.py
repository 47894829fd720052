"""The database fixtures (tests/db_fixtures.py) for the storage tests."""

from tests.db_fixtures import db_url, pg_database_url, pg_url, store  # noqa: F401 (fixtures)
