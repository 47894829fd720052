"""The REST API and dashboard over a tuner database (``tuner serve``)."""

from __future__ import annotations

from .app import create_app
from .server import serve
from .settings import Settings

__all__ = ["Settings", "create_app", "serve"]
