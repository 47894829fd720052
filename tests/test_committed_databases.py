"""The tuning databases committed under bench/results are at this tuner's schema, so the runtime
and the GPU tests, which open them read-only (no migration), can read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.committed import RESULTS, unpack
from tuner.db import Store

COMMITTED = sorted(RESULTS.glob("*.db.gz"))


@pytest.mark.parametrize("packed", COMMITTED, ids=lambda p: p.name)
def test_a_committed_tuning_database_opens_read_only(packed: Path, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{unpack(packed, tmp_path)}", read_only=True)  # raises StoreError at an older schema
    assert store.studies()
