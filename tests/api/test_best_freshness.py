"""The /best cache is never stale: out-of-order commits, deletes and a replaced SQLite file.

Each answer is compared with what a fresh reader (a new Store, as `tuner best` opens) finds at
that moment. The server rechecks its change marker on every request here (best_recheck_s=0).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Connection

from tests.api.conftest import BASE_CONFIG, PROBLEM, fill
from tuner.db import Store
from tuner.db._models import Trial
from tuner.service import Service

BEST = "/api/v1/best?kernel=attention&arch=cpu"


def truth(url: str) -> int:
    """The trial number `tuner best` answers now, from a reader that never cached anything."""
    with Store.open(url, create=False) as store:
        return Service(store).best(kernel="attention", arch="cpu", problem=PROBLEM).trial.number


def served(client: TestClient) -> int:
    response = client.get(BEST)
    assert response.status_code == 200, response.text
    return response.json()["provenance"]["trial"]


def plant(connection: Connection, study_id: int, number: int, median_s: float) -> None:
    """A trial written by another process: plain SQL on its own connection."""
    connection.execute(insert(Trial).values(
        study_id=study_id, number=number, config={**BASE_CONFIG, "block_n": 16 + number},
        status="ok", median_s=median_s, rel_l2=1e-6, resources={}, environment={},
        env_key="e", log="", created_at=text("CURRENT_TIMESTAMP")))


@pytest.mark.postgres
def test_out_of_order_commits_on_two_postgresql_connections(pg_url: str) -> None:
    with Store.open(pg_url) as store:
        fill(store)
        small = store.study("small").id
        engines = [create_engine(pg_url), create_engine(pg_url)]
        with TestClient(_app(store)) as client:
            assert served(client) == truth(pg_url) == 1
            first = engines[0].connect()
            first.begin()
            plant(first, small, 100, 1e-4)  # the lower id, and the faster config

            def second_writer() -> None:
                with engines[1].begin() as connection:
                    plant(connection, small, 101, 5e-4)  # the higher id, slower

            writer = threading.Thread(target=second_writer)
            writer.start()
            # Give the second transaction the chance to commit first (it may instead wait for
            # the first: either order must leave no stale answer).
            writer.join(timeout=2)
            assert served(client) == truth(pg_url)
            first.commit()
            first.close()
            writer.join()
            assert truth(pg_url) == 100
            assert served(client) == 100
        for engine in engines:
            engine.dispose()


def test_a_deleted_best_trial_is_not_served(filled_url: str) -> None:
    with Store.open(filled_url) as store, TestClient(_app(store)) as client:
        assert served(client) == 1
        engine = create_engine(filled_url)
        with engine.begin() as connection:  # by hand, as an operator cleaning up would
            connection.execute(text("DELETE FROM tuner_trials WHERE number = 1 AND study_id = "
                                    "(SELECT id FROM tuner_studies WHERE name = 'small')"))
        engine.dispose()
        assert served(client) == truth(filled_url) == 0
        assert client.get("/api/v1/studies/small").json()["n_trials"] == 5


def test_a_replaced_sqlite_file_is_read_afresh(tmp_path: Path) -> None:
    served_file, other = tmp_path / "tuner.db", tmp_path / "other.db"
    for path in (served_file, other):
        with Store.open(f"sqlite:///{path}") as store:
            fill(store)
    engine = create_engine(f"sqlite:///{other}")
    with engine.begin() as connection:  # same trials and ids, another fastest one
        connection.execute(text("UPDATE tuner_trials SET median_s = 1e-5 WHERE number = 2"))
    engine.dispose()
    url = f"sqlite:///{served_file}"
    with Store.open(url, create=False) as store, TestClient(_app(store)) as client:
        assert served(client) == 1
        os.replace(other, served_file)  # a restored backup, a copied-in database
        assert served(client) == truth(url) == 2
        small = client.get("/api/v1/studies/small").json()
        assert small["best_latency_s"] == pytest.approx(1e-5)


def _app(store: Store):
    from tuner.api import Settings, create_app

    return create_app(lambda: Service(store), Settings(best_recheck_s=0.0))
