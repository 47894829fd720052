"""Serving the app with uvicorn: what ``tuner serve`` calls."""

from __future__ import annotations

import uvicorn

from tuner.db import Store
from tuner.service import Service

from .app import create_app
from .settings import Settings


def serve(db_url: str, host: str = "127.0.0.1", port: int = 8000, token: str | None = None) -> None:
    """Serves the database at ``db_url`` until interrupted (one worker process).

    The database is opened before the server starts, so a bad URL fails with the Store's
    one-line :class:`tuner.db.StoreError` instead of a traceback from inside uvicorn.
    """
    settings = Settings(db_url=db_url, host=host, port=port, token=token)
    service = Service(Store.open(db_url, create=False))
    app = create_app(lambda: service, settings)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
