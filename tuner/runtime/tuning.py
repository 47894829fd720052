"""A background `tuner run` for a problem the database has no answer for (on request only).

It runs as a separate process (its own Ray or local executor, writing to the database), so the
caller's program goes on with its fallback meanwhile; its output goes to a log file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def shape_text(problem: dict[str, Any]) -> str:
    """``--shape`` text for a problem: ``B=16,causal=true,dtype=fp16``."""
    return ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in problem.items())


class Tuning:
    """One `tuner run` started in the background for one (kernel, arch, problem)."""

    def __init__(self, *, db: str, kernel: str, template: str | None, arch: str,
                 problem: dict[str, Any], args: Sequence[str], log_dir: Path):
        target = ["--template", template] if template else ["--kernel", kernel]
        self.command = [sys.executable, "-m", "tuner", "run", "--db", db, "--arch", arch, *target,
                        "--shape", shape_text(problem), "--no-progress", *args]
        log_dir.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.=-]", "_", f"{kernel}-{arch}-{shape_text(problem)}")
        self.log = log_dir / f"{name}.log"
        with open(self.log, "ab") as out:
            self._process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)

    def done(self) -> bool:
        return self._process.poll() is not None

    def wait(self, timeout: float | None = None) -> int:
        """The run's exit status once it has ended (TimeoutExpired after ``timeout`` seconds)."""
        return self._process.wait(timeout)
