"""Two tuner processes writing one study at once: no lost or doubled trials, no errors."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from typing import Any

import pytest

from tuner.db import Store
from tuner.db._engine import make_engine, parse_url

# Each process opens the fresh database (so both may try to create the schema), starts the
# same study and stores the same trial numbers, as two `tuner run`s of one study would.
WRITER = """
import sys
from tests.db_fixtures import measurement
from tuner.db import Store
with Store.open(sys.argv[1]) as store:
    study = store.ensure_study(name="shared", kernel="attention", backend="cpu", template_path=None,
                               problem={"S": 256}, arch="cpu", device_name="cpu", sampler="tpe",
                               directions=["minimize", "minimize"])
    ids = [store.record_trial(study, n, {"n": n}, measurement(source_hash=f"h{n}"), f"code {n}").id
           for n in range(30)]
    store.set_front(study.id, ids[:3])
"""


@pytest.mark.slow  # two interpreters start: seconds
def test_two_processes_write_one_study(db_url):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, db_url], stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    errors = [w.communicate()[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    with Store.open(db_url, create=False) as store:
        study = store.study("shared")
        page = store.trials(study.id, limit=100)
        assert study.counts == {"ok": 30}
        assert [t.number for t in page.items] == list(range(30))
        assert [t.number for t in store.front(study.id)] == [0, 1, 2]


def _open_at_once(path: str, barrier: Any) -> str:
    barrier.wait()
    try:
        with make_engine(parse_url(f"sqlite:///{path}")).connect() as connection:
            return connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    except Exception as exc:  # the answer under test: every process gets a connection
        return repr(exc)


def test_processes_opening_a_fresh_sqlite_file_at_once_all_connect(tmp_path):
    """SQLite answers a switch to WAL that races another's with 'database is locked' at once,
    busy timeout or not (about one round in fifteen of four processes did, before the retry)."""
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager, context.Pool(4) as pool:
        for round_ in range(40):
            barrier = manager.Barrier(4)
            path = str(tmp_path / f"fresh{round_}.db")
            assert pool.starmap(_open_at_once, [(path, barrier)] * 4) == ["wal"] * 4, round_
