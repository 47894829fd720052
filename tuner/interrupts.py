"""Ctrl-C during a run: a request to stop at the run loop's next turn, never an exception in
the middle of a database write.

A KeyboardInterrupt raised wherever the signal lands can leave a SQLite write transaction
open on a connection nobody returns to the pool; the run's last writes (failing the trials in
flight) then wait on that lock, from the same process, for the whole busy timeout. So once
trials are being asked for, SIGINT only sets a flag that the loop reads about once a second,
and the run stops there: its trials in flight are failed, its workers released, and the
command exits 130. Every SIGINT after the first is ignored, whatever the phase (a second
Ctrl-C used to land in Ray's exit handler, or in the cleanup of the first, and print a
traceback). Before the loop starts (imports, Ray starting, the database opening) nothing is
written that a later step could wait on, and SIGINT raises at once; it is also remembered,
since a library may swallow the KeyboardInterrupt.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class StopOnInterrupt:
    """A context manager that owns SIGINT for one command (main thread only; elsewhere a no-op);
    ``tuner.cli.main`` holds one for every command.

    ``defer()`` switches from raising KeyboardInterrupt to setting :attr:`requested`; it stays
    deferred until the context ends, so shutting down is never interrupted.
    """

    def __init__(self) -> None:
        self.requested = False
        self._deferred = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def defer(self) -> None:
        """From now on SIGINT only sets :attr:`requested`; raises KeyboardInterrupt at once if
        one came before (and was swallowed on the way here)."""
        self._deferred = True
        if self.requested:
            raise KeyboardInterrupt

    def __call__(self) -> bool:
        """Whether a stop was asked for: the run loop's check."""
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            return  # the command is stopping already: a second Ctrl-C must not cut its cleanup
        self.requested = True  # kept even if a library swallows the KeyboardInterrupt below
        if not self._deferred:
            raise KeyboardInterrupt
