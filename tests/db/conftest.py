"""The database fixtures (tests/db_fixtures.py) for the storage tests.

Imported rather than listed in ``pytest_plugins``, which pytest allows only in the root
conftest; registered for assertion rewriting first, as a plugin would be.
"""

import pytest

pytest.register_assert_rewrite("tests.db_fixtures")

from tests.db_fixtures import db_url, pg_database_url, pg_url, store  # noqa: E402, F401 (fixtures)
