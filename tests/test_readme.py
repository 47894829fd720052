"""The README stays true: its example template is the shipped file, and it runs as printed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tuner.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_example_blocks_are_the_shipped_files():
    blocks = re.findall(r"<!-- example-template: (\S+) -->\n```\w+\n(.*?)```", README, re.S)
    assert len(blocks) == 2
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


def test_ci_runs_the_readme_test_command():
    command = re.search(r"<!-- test-command -->\n```sh\n(.*)\n```", README).group(1)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci_lines
