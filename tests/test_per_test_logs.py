"""bench/per_test_logs.py, the plugin bench/gpu_diagnose.sh runs the GPU tests with: one log per
test as it ends, with the failure's message and the captured output."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_each_test_gets_a_log_with_its_outcome_message_and_output(tmp_path):
    (tmp_path / "test_sample.py").write_text(textwrap.dedent("""
        import pytest

        def test_passes():
            print("said on the way")

        def test_fails():
            assert 1 + 1 == 3, "the message the next session needs"

        def test_skips():
            pytest.skip("no GPU here")
    """))
    logs = tmp_path / "logs"
    env = {**os.environ, "PER_TEST_LOGS": str(logs), "PYTHONPATH": str(BENCH)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "per_test_logs", "-p", "no:cacheprovider",
                           "-o", "addopts=", "-q", "test_sample.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = [line.split("\t") for line in (logs / "outcomes.tsv").read_text().splitlines()]
    assert [(place, outcome, test) for place, outcome, _, test in rows] == [
        ("1", "passed", "test_sample.py::test_passes"), ("2", "call failed", "test_sample.py::test_fails"),
        ("3", "call skipped", "test_sample.py::test_skips")]
    failed = (logs / "002_test_sample.py_test_fails.log").read_text()
    assert "the message the next session needs" in failed and "assert (1 + 1) == 3" in failed
    assert "said on the way" in (logs / "001_test_sample.py_test_passes.log").read_text()
    assert "no GPU here" in (logs / "003_test_sample.py_test_skips.log").read_text()
