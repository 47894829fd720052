"""The storage layer's one user-facing error."""

from __future__ import annotations


class StoreError(Exception):
    """The database cannot be used as asked; the one-line message says what to do next."""
