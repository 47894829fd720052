"""The server's settings: read once at the edge (the CLI) and passed down to the app."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """What ``tuner serve`` was asked for.

    ``token``: when set, every route but ``/healthz`` and the static assets needs it, as
    ``Authorization: Bearer <token>`` or the ``tuner_token`` cookie that ``/login?token=`` sets.
    ``best_recheck_s``: the best-config cache asks the database whether anything was written at
    most this often, so a cache hit costs no query and a new trial shows within this delay.
    """

    db_url: str = "sqlite:///tuner.db"
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    best_recheck_s: float = 0.5
    poll_interval_s: float = 2.0
