"""A process's descendants, read from /proc (Linux; elsewhere none are found).

What an interrupted Ray start leaves behind: processes that Ray's raylet had started (its
agents), which nothing stops once the raylet is gone; and what a Ctrl-C during a run's start
ends at once (``kill_all_below``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process; None once it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of every live process below ``root``."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        if (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            started[int(entry.name)] = stat[1]
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = started[child]
            todo.append(child)
    return found


def still_running(processes: dict[int, int]) -> list[int]:
    """The pids of ``processes`` alive now (the same process: its start time matches)."""
    return [pid for pid, start in processes.items() if (s := _stat(pid)) and s[1] == start]


def kill(processes: dict[int, int]) -> None:
    for pid in still_running(processes):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_all_below(root: int) -> None:
    """SIGKILLs every process below ``root``. Each is stopped first, and the tree read again until
    no new one appears: a process stopped cannot start another, and none is orphaned (so lost
    from the tree) by its parent's death before it is found."""
    stopped: dict[int, int] = {}
    while found := {pid: start for pid, start in descendants(root).items() if pid not in stopped}:
        for pid in found:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped.update(found)
    kill(stopped)
