"""The in-process cache of best-config answers, dropped whenever the database was written.

Staleness is decided by a cheap "last write" marker the service reads with one tiny indexed
query. Asking for it on every request would cost a database round trip per answer, so the
marker is re-read at most every ``recheck_s`` seconds: a hit costs a dictionary lookup, and a
trial written by a running study is seen within ``recheck_s``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class CachedAnswer:
    """A rendered HTTP answer: the status code and the JSON body, ready to send."""

    status_code: int
    body: bytes


class BestCache:
    def __init__(self, marker: Callable[[], Hashable], recheck_s: float,
                 max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._marker = marker
        self._recheck_s = recheck_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, CachedAnswer] = OrderedDict()
        self._seen: Hashable = object()  # no marker read yet: the first check always refreshes
        self._checked_at = float("-inf")
        self._generation = 0  # bumped on every drop, so an answer computed before it is not kept
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether the write marker should be read again before trusting the entries."""
        return self._clock() - self._checked_at >= self._recheck_s

    def claim_refresh(self) -> bool:
        """True for the one caller that should now call :meth:`refresh`.

        Claiming restarts the interval at once, so while that one query runs the other
        requests keep answering from the entries instead of all querying the marker together.
        """
        with self._lock:
            if not self.due():
                return False
            self._checked_at = self._clock()
            return True

    def refresh(self) -> None:
        """Reads the write marker (a database query: call it off the event loop)."""
        marker = self._marker()
        with self._lock:
            if marker != self._seen:
                self._entries.clear()
                self._generation += 1
                self._seen = marker

    @property
    def generation(self) -> int:
        """Read it before computing an answer and hand it to :meth:`put`."""
        return self._generation

    def get(self, key: Hashable) -> CachedAnswer | None:
        with self._lock:
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
            return answer

    def put(self, key: Hashable, answer: CachedAnswer, generation: int) -> None:
        """Keeps ``answer`` unless the entries were dropped since ``generation`` was read."""
        with self._lock:
            if generation != self._generation:
                return
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
