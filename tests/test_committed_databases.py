"""The tuning databases committed under bench/results are at this tuner's schema, so the runtime
and the GPU tests, which open them read-only (no migration), can read them."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from tuner.db import Store

COMMITTED = sorted((Path(__file__).parent.parent / "bench" / "results").glob("*.db.gz"))


@pytest.mark.parametrize("packed", COMMITTED, ids=lambda p: p.name)
def test_a_committed_tuning_database_opens_read_only(packed: Path, tmp_path: Path) -> None:
    path = tmp_path / packed.name.removesuffix(".gz")
    with gzip.open(packed) as source, open(path, "wb") as out:
        shutil.copyfileobj(source, out)
    store = Store.open(f"sqlite:///{path}", read_only=True)  # raises StoreError at an older schema
    assert store.studies()
