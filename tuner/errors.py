"""The CLI's exit statuses and the user-facing error of bad input.

``tuner.commands.exit_status_for`` is the one place that maps exceptions to these statuses
(httpie's habit); ``tuner.cli.main`` applies it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # a bug, or a run whose trials all failed
    USAGE = 2  # bad input: the message says what to do
    INTERRUPTED = 130


class UsageError(Exception):
    """Bad input from the user; the message is one line that says what to do next."""
