"""Ctrl-C at random moments: every `tuner run` ends within 5 s, its database consistent.

    python bench/sigint.py [--trials 50] [--seed 19] [--out bench/results]   (writes sigint.{json,md})

Each trial starts `tuner run` (CPU backend, local Ray, SQLite) in its own session and sends
SIGINT to its whole process group, as a terminal's Ctrl-C does: even runs while starting (0.5-12 s
after launch: imports, Ray, the database), odd ones while tuning (0-8 s after the run stored its
first trial); runs 1, 2, 5, 6, ... send a second SIGINT 0.2-1 s after the first. Measured: the
seconds from the first signal to the process's exit, its exit status, whether stderr holds a
traceback, and then the database: no Optuna trial left RUNNING, SQLite's integrity check, every
completed Optuna trial stored in the tuner's table, the stored front equal to the
non-dominated stored trials, and the processes the run had started (Ray's) all gone. Every
trial resumes the same study, so each also proves the database was left writable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tuner.pareto import non_dominated
from tuner.workers.processes import descendants, still_running

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # bench.report; appended, so the installed tuner stays first

from bench.report import heading, table  # noqa: E402

LIMIT_S = 5.0
PHASES = ("starting", "tuning")
LEFT_WAIT_S = 30.0  # how long the processes a run started may take to end after it
STUDY = "sigint"
SHAPE = "B=1,H=2,S=128,D=32"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def stored_count(path: Path) -> int:
    """Trials in the tuner's table (0 before it exists)."""
    if not path.is_file():
        return 0
    connection = sqlite3.connect(path, timeout=30)
    try:
        return connection.execute("SELECT count(*) FROM tuner_trials").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        connection.close()


def check_database(path: Path, since: datetime) -> dict[str, Any]:
    connection = sqlite3.connect(path, timeout=30)
    try:
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "trials" not in tables or "tuner_trials" not in tables:
            return {"integrity": integrity, "optuna_running": 0, "complete_unstored": 0,
                    "front_ok": True, "stored": 0}
        # Optuna's local times: RUNNING trials this run asked for (an earlier run killed by the
        # bench's SIGKILL fallback leaves its own, which the next tuner fails after the grace)
        running = connection.execute("SELECT count(*) FROM trials WHERE state = 'RUNNING' AND "
                                     "datetime_start >= ?", (since.isoformat(sep=" "),)).fetchone()[0]
        unstored = connection.execute(
            "SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "WHERE s.study_name = ? AND t.state = 'COMPLETE' AND t.number NOT IN "
            "(SELECT number FROM tuner_trials)", (STUDY,)).fetchone()[0]
        rows = connection.execute(
            "SELECT id, median_s, rel_l2, source_hash FROM tuner_trials WHERE status = 'ok' "
            "AND median_s IS NOT NULL AND rel_l2 IS NOT NULL ORDER BY number").fetchall()
        stored = connection.execute("SELECT count(*) FROM tuner_trials").fetchone()[0]
        front = {r[0] for r in connection.execute("SELECT trial_id FROM tuner_front")}
    finally:
        connection.close()
    seen, unique = set(), []
    for row in rows:  # the tuner's rule: a source measured twice counts once (its first trial)
        if row[3] not in seen:
            seen.add(row[3])
            unique.append(row)
    points = np.array([[r[1], r[2]] for r in unique], dtype=np.float64).reshape(-1, 2)
    expected = {r[0] for r, on in zip(unique, non_dominated(points), strict=True) if on}
    return {"integrity": integrity, "optuna_running": running, "complete_unstored": unstored,
            "front_ok": front == expected, "stored": stored}


def one_trial(index: int, rng: random.Random, db: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "tuner", "run", "--arch", "cpu", "--shape", SHAPE,
               "--db", f"sqlite:///{db}", "--study", STUDY, "--trials", "1000", "--no-progress",
               "--seed", str(index), "--heartbeat", "2"]
    tuning, double = index % 2 == 1, index % 4 in (1, 2)
    delay = rng.uniform(0.0, 8.0) if tuning else rng.uniform(0.5, 12.0)
    second_after = rng.uniform(0.2, 1.0)
    before = stored_count(db)
    since = datetime.now()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    launched = time.monotonic()
    if tuning:  # a moment while it tunes: once it has stored a trial of its own
        while (stored_count(db) <= before and process.poll() is None
               and time.monotonic() < launched + 180):
            time.sleep(0.25)
    time.sleep(delay)
    delay = time.monotonic() - launched
    started = descendants(process.pid)
    finished_early = process.poll() is not None
    signalled = time.monotonic()
    if not finished_early:
        os.killpg(process.pid, signal.SIGINT)
        if double:
            time.sleep(second_after)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
    try:
        _, err = process.communicate(timeout=120)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate()
        hung = True
    exit_s = time.monotonic() - signalled
    deadline = time.monotonic() + LEFT_WAIT_S
    while still_running(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    processes_gone_s = round(time.monotonic() - signalled - exit_s, 1)
    left = still_running(started)
    left_commands = [command_line(pid) for pid in left]
    for pid in left:  # clean up for the next trial, and report it
        os.kill(pid, signal.SIGKILL)
    state = check_database(db, since)
    lines = [line for line in err.splitlines() if line.strip()]
    return {"trial": index, "phase": "tuning" if tuning else "starting",
            "signal_at_s": round(delay, 2), "double": double and not finished_early,
            "finished_before_signal": finished_early, "exit_s": round(exit_s, 2), "hung": hung,
            "returncode": process.returncode, "traceback": "Traceback" in err,
            "last_line": lines[-1][:200] if lines else "", "processes_started": len(started),
            "processes_left": len(left), "processes_gone_after_exit_s": processes_gone_s,
            "left": left_commands, **state}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    signalled = [r for r in rows if not r["finished_before_signal"]]
    exits = sorted(r["exit_s"] for r in signalled)
    return {
        "trials": len(rows), "signalled": len(signalled),
        "double_sigint": sum(r["double"] for r in signalled),
        "within_5s": sum(r["exit_s"] <= LIMIT_S and not r["hung"] for r in signalled),
        "exit_s_median": exits[len(exits) // 2] if exits else None,
        "exit_s_max": exits[-1] if exits else None,
        "exit_130": sum(r["returncode"] == 130 for r in signalled),
        "tracebacks": sum(r["traceback"] for r in rows),
        "integrity_ok": sum(r["integrity"] == "ok" for r in rows),
        "optuna_running_left": sum(r["optuna_running"] for r in rows),
        "complete_but_unstored": sum(r["complete_unstored"] for r in rows),
        "front_ok": sum(r["front_ok"] for r in rows),
        "processes_left": sum(r["processes_left"] for r in rows),
        "processes_gone_max_s": max((r["processes_gone_after_exit_s"] for r in rows), default=None),
        "by_phase": {p: sum(r["phase"] == p for r in signalled) for p in PHASES},
        "within_5s_by_phase": {p: sum(r["phase"] == p and r["exit_s"] <= LIMIT_S and not r["hung"]
                                      for r in signalled) for p in PHASES},
        "stored_trials_at_end": rows[-1]["stored"] if rows else 0,
    }


def markdown(summary: dict[str, Any], rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    s, phases = summary, summary["by_phase"]
    within = s["within_5s_by_phase"]
    measures = [
        (f"runs that ended within {LIMIT_S:.0f} s of the first SIGINT", f"{s['within_5s']} / {s['signalled']} "
         f"(starting {within['starting']} / {phases['starting']}, tuning {within['tuning']} / {phases['tuning']})"),
        ("seconds to exit: median, max", f"{s['exit_s_median']}, {s['exit_s_max']}"),
        ("exit status 130", f"{s['exit_130']} / {s['signalled']}"),
        ("tracebacks printed", s["tracebacks"]),
        ("SQLite integrity check ok", f"{s['integrity_ok']} / {s['trials']}"),
        ("Optuna trials left RUNNING by the interrupted run", s["optuna_running_left"]),
        ("completed Optuna trials missing from tuner_trials", s["complete_but_unstored"]),
        ("stored front equal to the non-dominated stored trials", f"{s['front_ok']} / {s['trials']}"),
        (f"processes of a run (Ray's) left {LEFT_WAIT_S:.0f} s after its exit", s["processes_left"]),
        ("seconds after a run's exit until its processes were gone: max", s["processes_gone_max_s"]),
        (f"trials stored at the end (the study resumed {s['trials']} times)", s["stored_trials_at_end"]),
    ]
    runs = [(r["trial"], r["phase"], r["signal_at_s"], "yes" if r["double"] else "", r["exit_s"],
             r["returncode"], r["last_line"]) for r in rows]
    lines = [
        *heading("Ctrl-C at random moments (bench/sigint.py)",
                 f"{meta['date']}, {meta['machine']}, load average {meta['load_before']} before and "
                 f"{meta['load_after']} after; `{meta['command']}`.",
                 f"{s['trials']} runs of `tuner run --arch cpu --shape {SHAPE}` (one SQLite study, each "
                 f"run resuming it), each sent SIGINT to its process group, as a terminal's Ctrl-C: "
                 f"{phases['starting']} while starting (0.5-12 s after launch: imports, Ray, the "
                 f"database), {phases['tuning']} while tuning (0-8 s after the run stored its first "
                 f"trial); {s['double_sigint']} got a second SIGINT 0.2-1 s after the first."),
        *table(("measure", "result"), measures), "",
        *table(("run", "phase", "SIGINT at (s)", "double", "exit after (s)", "status", "last line of stderr"),
               runs),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tuner-sigint-") as tmp:
        db = Path(tmp) / "tuner.db"
        for index in range(args.trials):
            rows.append(one_trial(index, rng, db))
            print(json.dumps(rows[-1]), flush=True)
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.node()} ({os.cpu_count()} cores, shared with other work)",
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "command": f"python bench/sigint.py --trials {args.trials} --seed {args.seed}"}
    summary = summarize(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sigint.json").write_text(json.dumps({"meta": meta, "summary": summary,
                                                      "runs": rows}, indent=2) + "\n")
    (args.out / "sigint.md").write_text(markdown(summary, rows, meta))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
