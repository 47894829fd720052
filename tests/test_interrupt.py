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
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState
from sqlalchemy import Engine, event

from tuner.cli import main
from tuner.db import Store, StoreError
from tuner.interrupts import MESSAGE
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


def names(processes: dict[int, int]) -> dict[str, int]:
    """Command name -> pid of ``processes`` still alive."""
    found = {}
    for pid in processes:
        try:
            found[Path(f"/proc/{pid}/comm").read_text().strip()] = pid
        except OSError:
            pass
    return found


def ray_has_started_processes(pid: int, process: str = "gcs_server") -> dict[int, int]:
    """The processes below ``pid`` once Ray's ``process`` is among them (empty until then)."""
    found = descendants(pid)
    return found if process in names(found) else {}


def session_processes(pid: int) -> list[int]:
    """The live processes of the Ray session that the driver ``pid`` started: those whose command
    line or open files name its session directory (a worker renames its command line)."""
    sessions = [d.name for d in (Path(tempfile.gettempdir()) / "ray").glob(f"session_*_{pid}")]
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            seen = [(entry / "cmdline").read_bytes().decode(errors="replace")]
            seen += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(session in text for session in sessions for text in seen):
            found.append(int(entry.name))
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_sockets() -> list[tuple[int, int, str, int, str]]:
    """(local port, remote port, state, bytes received but not yet read, inode) of every TCP
    socket (/proc/net/tcp and tcp6)."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            rows.append((int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16),
                         fields[3], int(fields[4].split(":")[1], 16), fields[9]))
    return rows


def unanswered(client: int, server: int) -> bool:
    """Whether ``client`` has sent ``server`` (a stopped process) bytes it has not read: a
    request of the client's waits on it."""
    sockets = tcp_sockets()
    listening = {local for local, _, state, _, inode in sockets
                 if state == "0A" and inode in socket_inodes(server)}
    mine = socket_inodes(client)
    ports = {(local, remote) for local, remote, _, _, inode in sockets if remote in listening and inode in mine}
    return any((remote, local) in ports and waiting for local, remote, _, waiting, _ in sockets)


def run_to_interrupt(url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuner", "run", "--arch", "cpu", "--db", url,
                             "--study", STUDY, "--trials", "5", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_ctrl_c_while_ray_starts_stops_the_processes_it_started(tmp_path):
    """The signal comes once Ray's first processes run (its start is under way, or just done):
    the tuner exits 130 with its one line, and none of the processes Ray had started is left."""
    process = run_to_interrupt(f"sqlite:///{tmp_path / 'tuner.db'}")
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


def test_ctrl_c_while_ray_waits_on_its_gcs_ends_the_run_at_once(tmp_path):
    """Ray's GCS stops answering once the raylet runs (frozen with SIGSTOP, and never resumed),
    and the signal comes once the tuner has asked it something: ray.init waits in native code.
    Ctrl-C still ends the run then and there: exit 130, the one line and nothing else on stderr
    (before, the run went on waiting until Ray's own GCS deadline passed and logged it), and no
    process of its Ray session left, the frozen one included."""
    process = run_to_interrupt(f"sqlite:///{tmp_path / 'tuner.db'}")
    started: dict[int, int] = {}
    while not started and process.poll() is None:
        started = ray_has_started_processes(process.pid, "raylet")
        time.sleep(0.02)
    assert started, process.communicate()[1]
    gcs = names(started)["gcs_server"]
    os.kill(gcs, signal.SIGSTOP)
    while not unanswered(process.pid, gcs) and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate()
    assert process.returncode == 130, err
    assert err.splitlines() == [MESSAGE]
    for _ in range(50):  # killed processes are reaped by init a moment after the tuner exits
        if not still_running(started) and not session_processes(process.pid):
            break
        time.sleep(0.2)
    assert still_running(started) == [] and session_processes(process.pid) == []


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
