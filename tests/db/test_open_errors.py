"""Opening a database that cannot be used fails fast with one line that says what to do."""

from __future__ import annotations

import time

import pytest

from tuner.db import Store, StoreError


def test_an_unreachable_server_is_a_quick_store_error_without_the_password():
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        Store.open("postgresql+psycopg://nobody:s3cret-pw@127.0.0.1:1/x")
    message = str(caught.value)
    assert time.monotonic() - started < 10
    assert "s3cret-pw" not in message and "nobody:***@127.0.0.1:1/x" in message
    assert "check that the server is running" in message and "\n" not in message


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
