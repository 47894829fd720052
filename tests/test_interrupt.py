"""Ctrl-C during a run leaves a consistent database, and the same command continues the study."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from tuner.db import Store, StoreError
from tuner.service import NotFound, Service

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
                               stderr=subprocess.PIPE, text=True)
    while stored_trials(url) < 3 and process.poll() is None:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate()
    assert process.returncode == 130, err
    assert "run the same command to continue" in err

    trials = optuna.load_study(study_name=STUDY, storage=url).trials
    assert trials and all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    completed_before = sum(t.state == TrialState.COMPLETE for t in trials)
    assert stored_trials(url) >= completed_before

    subprocess.run([*command, "--trials", "2"], check=True, capture_output=True)
    numbers = [t.number for t in optuna.load_study(study_name=STUDY, storage=url).trials]
    assert sorted(numbers) == list(range(len(trials) + len(numbers) - len(trials)))
    assert len(numbers) >= len(trials) + 2
