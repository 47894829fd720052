"""A pytest plugin: one log file per test, written the moment the test ends, so a run that is
killed at its deadline still leaves every finished test's outcome and message.

    PER_TEST_LOGS=DIR PYTHONPATH=bench python3 -m pytest -p per_test_logs ...

DIR/NNN_<test id>.log (NNN: the test's place in the run) holds each phase's outcome and duration,
the failure's traceback and the test's captured stdout, stderr and log; DIR/outcomes.tsv one line
per test (place, outcome, seconds, test id), appended as tests end.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

_reports: dict[str, list[pytest.TestReport]] = {}
_count = 0


def _directory() -> Path | None:
    text = os.environ.get("PER_TEST_LOGS")
    return Path(text) if text else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _reports.setdefault(report.nodeid, []).append(report)


def pytest_runtest_logfinish(nodeid: str) -> None:
    global _count
    directory, reports = _directory(), _reports.pop(nodeid, [])
    if directory is None or not reports:
        return
    _count += 1
    directory.mkdir(parents=True, exist_ok=True)
    outcome = next((f"{r.when} {r.outcome}" for r in reports if not r.passed), "passed")
    seconds = sum(r.duration for r in reports)
    lines = [nodeid, f"outcome: {outcome} ({seconds:.1f} s)"]
    for report in reports:
        lines.append(f"\n== {report.when}: {report.outcome} ({report.duration:.2f} s)")
        if report.longrepr is not None:
            lines.append(str(report.longrepr))
        lines += [f"-- {name}\n{text}" for name, text in report.sections if text.strip()]
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", nodeid)[:150]
    (directory / f"{_count:03d}_{name}.log").write_text("\n".join(lines) + "\n")
    with open(directory / "outcomes.tsv", "a") as table:
        table.write(f"{_count}\t{outcome}\t{seconds:.1f}\t{nodeid}\n")
