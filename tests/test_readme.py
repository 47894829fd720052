"""The README stays true: its example template is the shipped file, and it runs as printed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from tests.conftest import require
from tuner.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_example_blocks_are_the_shipped_files():
    blocks = re.findall(r"<!-- example-template: (\S+) -->\n```\w+\n(.*?)```", README, re.S)
    assert len(blocks) == 4  # the C example and the CUDA example, each a spec and its source
    for path, text in blocks:
        assert (ROOT / path).read_text() == text, f"README's copy of {path} is stale"


def test_example_commands_run_as_printed(tmp_path, ray_session, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    commands = re.findall(r"^tuner (.*--template examples/softmax_spec\.py.*)$", README, re.M)
    assert len(commands) == 2
    for command in commands:
        argv = shlex.split(command) + ["--db", f"sqlite:///{tmp_path / 'tuner.db'}"]
        assert main(argv) == 0, command
    assert '"config"' in capsys.readouterr().out


def test_the_cuda_example_compiles_as_printed(monkeypatch, capsys):
    """The README's `tuner check` line, on this machine (no GPU): every admitted config compiles.
    The run and best lines need the GPU: tests/gpu/test_example_cuda.py runs them."""
    require(_has_nvcc(), "nvcc is not installed (set CUDA_HOME or install the CUDA toolkit)")
    monkeypatch.chdir(ROOT)
    lines = re.findall(r"^tuner (check .*--template examples/softmax_cuda\.py.*)$", README, re.M)
    assert len(lines) == 1
    assert main(shlex.split(lines[0]) + ["--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "check() admits 32" in out and "32 of 32 configs compiled for sm_90a; 0 failed" in out


def _has_nvcc() -> bool:
    from tuner.workers.cuda_compile import ToolchainMissing, nvcc_path

    try:
        return bool(nvcc_path())
    except ToolchainMissing:
        return False


def test_ci_runs_the_readme_test_command():
    command = re.search(r"<!-- test-command -->\n```sh\n(.*)\n```", README).group(1)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci_lines


def test_the_setup_line_leaves_tuner_on_path():
    """The "Using it" lines call plain `tuner`: after the set-up line, in the same shell, it must
    be found. The line's steps run as printed, less making the venv and installing into it (the
    README's test command made this checkout's .venv, where the set-up line makes it)."""
    setup = re.search(r"<!-- setup-command -->\n```sh\n(.*)\n```", README).group(1)
    assert len(re.findall(r"^## Set up\n(.*?)^## ", README, re.S | re.M)[0].split("```sh")) == 3, \
        "the README keeps exactly two set-up commands"
    venv = ROOT / ".venv" / "bin"
    require((venv / "tuner").exists(), "this checkout has no .venv made by the README's commands")
    made = re.sub(r'^python3 -m venv \S+ && |(?:\S*/)?pip install -e "[^"]*" && ', "", setup)
    steps = made.split(" && ")
    kept = steps[:next(i for i, step in enumerate(steps) if step.startswith("tuner "))]
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if Path(p).resolve() != venv.resolve())
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": path}
    done = subprocess.run(["bash", "-c", " && ".join([*kept, "command -v tuner"])], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"`tuner` is not on PATH after: {' && '.join(kept)}"
    assert Path(done.stdout.strip()).resolve() == (venv / "tuner").resolve()
    assert re.findall(r"^tuner \w+", README, re.M), "the README calls `tuner` as printed"
