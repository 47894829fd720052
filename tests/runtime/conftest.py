"""The runtime's CPU tests' shared fixture: the process's runtime over a database of the small
attention problem's trials (tests.runtime.helpers.fill_attention)."""

from __future__ import annotations

import pytest

from tests.runtime.helpers import fill_attention
from tuner import runtime as rt
from tuner.db import Store


@pytest.fixture
def runtime(tmp_path) -> rt.Runtime:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        fill_attention(store)
    return rt.configure(db=url)
