"""User-facing errors and the one place that maps them to exit codes (httpie's habit)."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # a bug, or a run whose trials all failed
    USAGE = 2  # bad input: the message says what to do
    INTERRUPTED = 130


class UsageError(Exception):
    """Bad input from the user; the message is one line that says what to do next."""
