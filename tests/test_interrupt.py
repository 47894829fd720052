"""Ctrl-C during a run leaves a consistent database, and the same command continues the study.

Ctrl-C in a terminal signals the whole foreground process group (the tuner and the Ray
processes it started), so the subprocess test signals the group, twice, as an impatient user
does. bench/sigint.py repeats it at random moments and times each exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState
from sqlalchemy import Engine, event

from tuner.cli import main
from tuner.db import Store, StoreError
from tuner.service import NotFound, Service
from tuner.workers.processes import descendants, still_running

STUDY = "interrupted"


def stored_trials(url: str) -> int:
    try:
        with Store.open(url, create=False) as store:
            return Service(store).study(STUDY).n_trials
    except (StoreError, NotFound):
        return 0


def test_ctrl_c_then_resume(tmp_path):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    command = [sys.executable, "-m", "tuner", "run", "--arch", "cpu", "--shape", "B=1,H=2,S=128,D=64",
               "--db", url, "--study", STUDY, "--no-progress", "--seed", "5"]
    process = subprocess.Popen([*command, "--trials", "500"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    while stored_trials(url) < 3 and process.poll() is None:
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.3)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)  # the second, impatient Ctrl-C
    _, err = process.communicate()
    assert process.returncode == 130, err
    assert "run the same command to continue" in err and "Traceback" not in err, err

    trials = optuna.load_study(study_name=STUDY, storage=url).trials
    assert trials and all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    completed_before = sum(t.state == TrialState.COMPLETE for t in trials)
    assert stored_trials(url) >= completed_before

    subprocess.run([*command, "--trials", "2"], check=True, capture_output=True)
    numbers = [t.number for t in optuna.load_study(study_name=STUDY, storage=url).trials]
    assert sorted(numbers) == list(range(len(trials) + len(numbers) - len(trials)))
    assert len(numbers) >= len(trials) + 2


def ray_has_started_processes(pid: int) -> dict[int, int]:
    """The processes below ``pid`` once Ray's GCS is among them (empty until then)."""
    found = descendants(pid)
    names = set()
    for child in found:
        try:
            names.add(Path(f"/proc/{child}/comm").read_text().strip())
        except OSError:
            pass
    return found if "gcs_server" in names else {}


def test_ctrl_c_while_ray_starts_stops_the_processes_it_started(tmp_path):
    """The signal comes once Ray's first processes run (its start is under way, or just done):
    the tuner exits 130 with its one line, and none of the processes Ray had started is left."""
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    process = subprocess.Popen([sys.executable, "-m", "tuner", "run", "--arch", "cpu", "--db", url,
                                "--study", STUDY, "--trials", "5", "--no-progress"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    started: dict[int, int] = {}
    while not started and process.poll() is None:
        started = ray_has_started_processes(process.pid)
        time.sleep(0.05)
    assert started, process.communicate()[1]
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate()
    assert process.returncode == 130, err
    assert "run the same command to continue" in err and "Traceback" not in err, err
    for _ in range(50):  # killed processes are reaped by init a moment after the tuner exits
        if not still_running(started):
            break
        time.sleep(0.2)
    assert still_running(started) == []


def test_ctrl_c_during_a_database_write_lets_the_write_finish(tmp_path, capsys):
    """The signal lands inside the INSERT of the first trial: that trial is still stored (the
    write completes), the run then stops at its next turn, and no trial is left running."""
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    fired = []

    def interrupt_the_first_trial_insert(conn, cursor, statement, *args) -> None:
        if not fired and statement.lstrip().startswith("INSERT INTO tuner_trials"):
            fired.append(statement)
            signal.raise_signal(signal.SIGINT)

    event.listen(Engine, "before_cursor_execute", interrupt_the_first_trial_insert)
    try:
        code = main(["run", "--arch", "cpu", "--shape", "B=1,H=1,S=64,D=16", "--db", url,
                     "--study", STUDY, "--executor", "local", "--trials", "20", "--no-progress",
                     "--seed", "3"])
    finally:
        event.remove(Engine, "before_cursor_execute", interrupt_the_first_trial_insert)
    assert fired and code == 130, capsys.readouterr().err
    assert stored_trials(url) >= 1
    trials = optuna.load_study(study_name=STUDY, storage=url).trials
    assert trials and all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    assert len(trials) < 20  # it stopped
