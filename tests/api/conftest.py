"""Databases filled through the real Store, and the app over them (in process, or on a port)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from tests.db_fixtures import db_url, measurement, pg_database_url, pg_url  # noqa: F401 (fixtures)
from tuner.api import Settings, create_app
from tuner.db import Store, StudyRecord
from tuner.enums import Status
from tuner.kernel_templates import find_spec
from tuner.pareto import non_dominated
from tuner.service import Service

SPEC = find_spec("attention", "cpu")
BASE_CONFIG = {"block_m": 16, "block_n": 32, "unroll": 4, "threads": 1, "accum": "float",
               "exp": "libm", "fast_math": False, "march": "generic"}
# (config changes, status, median latency, relative error) of each trial, in number order
TRIALS = [
    ({}, Status.OK, 2e-3, 1e-6),
    ({"exp": "poly3"}, Status.OK, 1e-3, 1e-4),
    ({"block_m": 8}, Status.OK, 3e-3, 1e-3),  # dominated by trial 0
    ({"exp": "poly2", "fast_math": True}, Status.WRONG_RESULT, 5e-4, 0.5),
    ({"unroll": 8}, Status.COMPILE_ERROR, None, None),
    ({"threads": 2}, Status.INVALID, None, None),
]
PROBLEM = SPEC.default_problem()  # B=1 H=4 S=256 D=64, not causal
BIG_PROBLEM = {**PROBLEM, "S": 1024}


def record(store: Store, study: StudyRecord, number: int, changes: dict[str, Any], status: Status,
           median_s: float | None, rel_l2: float | None, problem: dict[str, Any]):
    """Stores one trial the way the tuner does: the real rendered source and its hash."""
    config = {**BASE_CONFIG, **changes}
    source = SPEC.render(config, problem)
    reason = None if status is Status.OK else f"{status.value}: planted by the test"
    result = measurement(status=status, median_s=median_s, rel_l2=rel_l2,
                         source_hash=source.digest(), reason=reason,
                         environment={"host": "testhost", "device": "cpu", "cc": "gcc 12"})
    return store.record_trial(study, number, config, result, source.code)


def update_front(store: Store, study: StudyRecord) -> None:
    measured = store.study_trials_for_front(study.id)
    points = np.array([[t.median_s, t.rel_l2] for t in measured]).reshape(-1, 2)
    store.set_front(study.id, [t.id for t, on in zip(measured, non_dominated(points), strict=True) if on])


def new_study(store: Store, name: str, problem: dict[str, Any]) -> StudyRecord:
    return store.ensure_study(name=name, kernel="attention", backend="cpu", template_path=None,
                              problem=problem, arch="cpu", device_name="test cpu", sampler="tpe",
                              directions=["minimize", "minimize"])


def fill(store: Store) -> None:
    """Study ``small`` (the six TRIALS) and study ``big`` (one ok trial at S=1024)."""
    small = new_study(store, "small", PROBLEM)
    for number, (changes, status, median_s, rel_l2) in enumerate(TRIALS):
        record(store, small, number, changes, status, median_s, rel_l2, PROBLEM)
    update_front(store, small)
    big = new_study(store, "big", BIG_PROBLEM)
    record(store, big, 0, {"block_n": 64}, Status.OK, 8e-3, 2e-6, BIG_PROBLEM)
    update_front(store, big)


@pytest.fixture
def filled_url(db_url: str) -> str:
    with Store.open(db_url) as store:
        fill(store)
    return db_url


@pytest.fixture
def settings() -> Settings:
    # Recheck the write marker on every request so tests see writes at once.
    return Settings(best_recheck_s=0.0, poll_interval_s=0.3)


@pytest.fixture
def store(filled_url: str) -> Iterator[Store]:
    with Store.open(filled_url) as opened:
        yield opened


@pytest.fixture
def client(store: Store, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: Service(store), settings)) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server(store: Store, settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on a loopback port, for a browser; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(lambda: Service(store), settings), host="127.0.0.1",
                            port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited before it started serving")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join()
