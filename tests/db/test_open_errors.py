"""Opening a database that cannot be used fails fast with one line that says what to do."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from tuner.db import Store, StoreError
from tuner.db._engine import driver_connect_args


def test_an_unreachable_server_is_a_store_error_without_the_password():
    with pytest.raises(StoreError) as caught:
        Store.open("postgresql+psycopg://nobody:s3cret-pw@127.0.0.1:1/x")
    message = str(caught.value)
    assert "s3cret-pw" not in message and "nobody:***@127.0.0.1:1/x" in message
    assert "check that the server is running" in message and "\n" not in message


def test_a_server_that_does_not_answer_is_given_up_on():
    """What makes a dead server quick to report: the driver waits a bounded time to connect."""
    assert driver_connect_args(make_url("postgresql+psycopg://u@10.255.255.1/x"))["connect_timeout"] > 0


@pytest.mark.parametrize("url, expected", [
    ("not a url", "is not a database URL"),
    ("mysql://u@localhost/x", "unsupported database"),
])
def test_urls_the_store_cannot_use_are_refused(url, expected):
    with pytest.raises(StoreError, match=expected):
        Store.open(url)


def test_a_reader_does_not_create_a_missing_sqlite_file(tmp_path):
    path = tmp_path / "missing.db"
    with pytest.raises(StoreError, match="no database file"):
        Store.open(f"sqlite:///{path}", create=False)
    assert not path.exists()


def test_a_sqlite_file_in_a_missing_folder_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot reach database"):
        Store.open(f"sqlite:///{tmp_path}/no/such/folder/tuner.db")
