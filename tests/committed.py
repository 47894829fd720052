"""The tuning databases committed under bench/results (gzipped SQLite), unpacked for a test."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from tuner.db import Store

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"


def unpack(packed: Path, folder: Path) -> Path:
    """``packed`` (a .db.gz) unpacked into ``folder``."""
    path = folder / packed.name.removesuffix(".gz")
    with gzip.open(packed) as source, open(path, "wb") as out:
        shutil.copyfileobj(source, out)
    return path


def committed_database(name: str, folder: Path) -> str:
    """The URL of a copy of bench/results/<name>.db.gz in ``folder``, brought to this tuner's schema
    (the runtime only reads: it opens a database read-only, with no migration)."""
    url = f"sqlite:///{unpack(RESULTS / f'{name}.db.gz', folder)}"
    Store.open(url, create=False).close()
    return url
