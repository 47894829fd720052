"""Ctrl-C during a run: a request to stop at the run loop's next turn, never an exception in
the middle of a database write.

A KeyboardInterrupt raised wherever the signal lands can leave a SQLite write transaction
open on a connection nobody returns to the pool; the run's last writes (failing the trials in
flight) then wait on that lock, from the same process, for the whole busy timeout. So once
trials are being asked for, SIGINT only sets a flag that the loop reads about once a second,
and the run stops there: its trials in flight are failed, its workers released, and the
command exits 130. Every SIGINT after the first is ignored, whatever the phase (a second
Ctrl-C used to land in Ray's exit handler, or in the cleanup of the first, and print a
traceback). Before the run's start (imports, parsing) SIGINT raises at once; it is also
remembered, since a library may swallow the KeyboardInterrupt.

When the command owns its process (``tuner`` on a command line, not ``main()`` called from
Python), it also ends that process itself, so that no wait on Ray delays the exit:

- While the run starts (Ray starting, its measuring device, the database opening), a SIGINT
  ends the process at once from a thread of its own (``abort_on_interrupt``): the main thread
  may sit in native code for seconds then (``ray.init`` waits on the processes it starts, and
  Python runs a signal handler only when the main thread comes back to bytecode). That thread
  kills every process the run started, writes the one line and exits 130. Nothing is lost: no
  trial exists yet, and the only write so far, the schema's migration, is one transaction that
  the database rolls back. The thread needs the GIL, so a native call that holds it (two of
  ray.init's do: its wait for the GCS's port file, and the driver's CoreWorker start) delays
  it until that call returns.
- Once the loop has stopped and failed its trials in flight, everything is stored, and the
  run's processes are killed the same way (``abort``) instead of Ray's graceful shutdown, which
  gives each of its processes up to a second to exit, one after another.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, NoReturn

from tuner.errors import ExitStatus

MESSAGE = "tuner: interrupted; finished trials are stored: run the same command to continue"


class StopOnInterrupt:
    """A context manager that owns SIGINT for one command (main thread only; elsewhere a no-op);
    ``tuner.cli.main`` holds one for every command.

    ``abort_on_interrupt()`` switches from raising KeyboardInterrupt to ending the process at
    once; ``defer()`` to setting :attr:`requested`, and it stays deferred until the context
    ends, so shutting down is never interrupted.
    """

    def __init__(self, *, owns_process: bool = False) -> None:
        """``owns_process``: the command may end the process (see the module's doc)."""
        self.requested = False
        self._owns_process = owns_process
        self._cleanup: Callable[[], None] | None = None
        self._deferred = False
        self._previous: Any = None
        self._installed = False
        self._watcher: _Watcher | None = None

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop_watching()
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def abort_on_interrupt(self, cleanup: Callable[[], None]) -> None:
        """Until ``defer()`` (or the context's end) a SIGINT ends the process at once: ``cleanup``
        (which kills the processes the run started), the one line, exit status 130. ``abort()``
        ends it so later."""
        if self._installed and self._owns_process and self._watcher is None:
            self._cleanup = cleanup
            self._watcher = _Watcher(cleanup)

    def abort(self) -> None:
        """Ends the process as a SIGINT before the loop does, when the command owns it and
        ``abort_on_interrupt`` was called; else returns (the caller stops as usual)."""
        if self._cleanup is not None:
            _abort(self._cleanup)

    def defer(self) -> None:
        """From now on SIGINT only sets :attr:`requested`; raises KeyboardInterrupt at once if
        one came before (and was swallowed on the way here)."""
        self._deferred = True
        self._stop_watching()
        if self.requested:
            raise KeyboardInterrupt

    def _stop_watching(self) -> None:
        """A SIGINT the watcher has seen ends the process: then this never returns. One that
        reached only the handler, as the watcher stopped, is left in :attr:`requested`."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def __call__(self) -> bool:
        """Whether a stop was asked for: the run loop's check."""
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            return  # the command is stopping already: a second Ctrl-C must not cut its cleanup
        self.requested = True  # kept even if a library swallows the KeyboardInterrupt below
        if not self._deferred and self._watcher is None:  # with a watcher, it ends the process
            raise KeyboardInterrupt


class _Watcher:
    """A thread that ends the process on SIGINT. The signal reaches it through Python's wakeup
    fd, which the interpreter's C-level handler writes in whichever thread the kernel chose,
    while the main thread may be anywhere, native code included."""

    def __init__(self, cleanup: Callable[[], None]) -> None:
        self._cleanup = cleanup
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="sigint-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write)  # the thread reads what is left, then the end of the pipe
        self._thread.join()

    def _watch(self) -> None:
        try:
            while data := os.read(self._read, 64):
                if signal.SIGINT in data:
                    _abort(self._cleanup)
        finally:
            os.close(self._read)


def _abort(cleanup: Callable[[], None]) -> NoReturn:
    """Ends the process with no cleanup but ``cleanup``: no other is owed (see the module's doc),
    and none may wait on the main thread, which may not come back."""
    try:
        cleanup()
        os.write(2, f"{MESSAGE}\n".encode())
    finally:
        os._exit(ExitStatus.INTERRUPTED)
