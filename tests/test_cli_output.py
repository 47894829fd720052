"""What the CLI prints is usable as printed: whole names in tables, no traceback into a pipe."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.db_fixtures import measurement
from tuner.cli import main
from tuner.db import Store

LONG_NAME = "attention-cpu-B1-H4-S256-D64-causal1-" + "x" * 80


@pytest.fixture
def one_study(tmp_path) -> str:
    """A database with one long-named study of one ok trial (the built-in's full problem)."""
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        study = store.ensure_study(name=LONG_NAME, kernel="attention", backend="cpu",
                                   template_path=None,
                                   problem={"B": 1, "H": 4, "S": 256, "D": 64, "causal": True},
                                   arch="cpu", device_name="a cpu", sampler="nsga2",
                                   directions=["minimize", "minimize"])
        store.record_trial(study, 0, {"block_m": 16}, measurement(), "code")
    return url


def test_studies_prints_whole_names_into_a_pipe(one_study, capsys):
    assert main(["studies", "--db", one_study]) == 0
    assert LONG_NAME in capsys.readouterr().out  # capsys is a pipe of 80 columns to rich


@pytest.mark.parametrize("command", ["kernels", "best"])  # a rich table, a JSON print
def test_a_closed_pipe_ends_quietly(command, one_study):
    """`tuner best | head -1`: the reader leaves before the output is written."""
    argv = ["kernels"] if command == "kernels" else ["best", "--arch", "cpu", "--shape", "causal=1",
                                                     "--db", one_study]
    process = subprocess.Popen([sys.executable, "-m", "tuner", *argv],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before the interpreter has even started: every write meets EPIPE
    err = process.stderr.read().decode()
    assert process.wait() == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
