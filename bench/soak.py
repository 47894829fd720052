"""Soak: `tuner serve` under wrk while two `tuner run` write to the same PostgreSQL database.

    python bench/soak.py [--minutes 10] [--connections 64] [--out bench/results]   (soak.{json,md})

A fresh database on the local PostgreSQL (127.0.0.1, trust auth); two CPU-backend tuners on one
study (random sampler, so configs repeat and are answered from storage too: writes never stop);
once a first trial is stored, `tuner serve` on a loopback port and wrk at 64 connections over
several /best queries for the whole duration. Beside wrk a checker asks each query every 0.2 s
and keeps every answer; a sampler reads the server's resident memory every 5 s.

Measured: wrk's requests, non-2xx responses and socket errors; stale answers, in two ways:
(1) during the soak, an answer is stale when a faster trial fitting the query had been stored
more than ``recheck + 2`` seconds before it was asked (the cache rechecks the database every
0.5 s by design; 2 s covers the time between a trial's timestamp and its commit); (2) at the
end, with the tuners stopped, every query's answer must be the one `tuner best` prints. And the
server's memory from start to end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # bench.report; appended, so the installed tuner stays first

from bench.report import heading, table  # noqa: E402

PG_SERVER = os.environ.get("TUNER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TUNER = [sys.executable, "-m", "tuner"]
SHAPE = "B=1,H=2,S=128,D=32"
STUDY = "soak"
RECHECK_S = 0.5  # api.Settings.best_recheck_s, the server's default
MARGIN_S = 2.0
# (query string, the same question for `tuner best`, the error bound it applies)
QUERIES = [
    ("kernel=attention&arch=cpu&shape=B=1&shape=H=2&shape=S=128&shape=D=32",
     ["--shape", SHAPE], None),
    ("kernel=attention&arch=cpu&shape=B=1&shape=H=2&shape=S=128&shape=D=32&max_error=1e-3",
     ["--shape", SHAPE, "--max-error", "1e-3"], 1e-3),
    ("kernel=attention&arch=cpu&shape=B=1&shape=H=2&shape=S=256&shape=D=32",  # the nearest: S=128
     ["--shape", "B=1,H=2,S=256,D=32"], None),
]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, query: str) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", f"/api/v1/best?{query}")
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Checker(threading.Thread):
    """Asks every query every 0.2 s and keeps (time, query index, status, latency, trial)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.answers, self.stop = port, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for index, (query, _, _) in enumerate(QUERIES):
                asked = datetime.now(timezone.utc)
                try:
                    status, body = get(self.port, query)
                except OSError as exc:
                    self.answers.append((asked, index, f"error {exc}", None, None))
                    continue
                self.answers.append((asked, index, status, body.get("latency_s"),
                                     (body.get("provenance") or {}).get("trial")))
            self.stop.wait(0.2)


def stored_trials(engine) -> list[tuple[datetime, float, float]]:
    """(created_at, latency, error) of every ok trial of the study."""
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT t.created_at, t.median_s, t.rel_l2 FROM tuner_trials t JOIN tuner_studies s "
            "ON s.id = t.study_id WHERE s.name = :name AND t.status = 'ok' AND "
            "t.median_s IS NOT NULL"), {"name": STUDY}).all()
    return [(created, median, error) for created, median, error in rows]


def stale_answers(answers, trials) -> list[dict[str, Any]]:
    """Answers slower than a trial that fit the query and was stored long enough before."""
    trials = sorted(trials)
    stale = []
    for asked, index, status, latency, trial in answers:
        if status != 200:
            continue
        bound = QUERIES[index][2]
        cutoff = asked - timedelta(seconds=RECHECK_S + MARGIN_S)
        known = [m for created, m, e in trials if created < cutoff and (bound is None or e <= bound)]
        if known and latency > min(known):
            stale.append({"asked": asked.isoformat(), "query": index, "served_latency_s": latency,
                          "faster_known_s": min(known), "trial": trial})
    return stale


def changes(answers) -> int:
    """How often a query's answer moved to another trial over the soak."""
    last: dict[int, Any] = {}
    moved = 0
    for _, index, _, _, trial in answers:
        moved += index in last and last[index] != trial
        last[index] = trial
    return moved


def wrk_figures(output: str) -> dict[str, Any]:
    def number(pattern: str) -> int:
        found = re.search(pattern, output)
        return int(found.group(1)) if found else 0

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return {"requests": number(r"(\d+) requests in"), "non_2xx": number(r"Non-2xx or 3xx responses: (\d+)"),
            "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
            "requests_per_s": float(rate.group(1)) if rate else None}


def start_tuner(url: str, seed: int, seconds: float, log: Path) -> subprocess.Popen:
    command = [*TUNER, "run", "--arch", "cpu", "--shape", SHAPE, "--db", url, "--study", STUDY,
               "--sampler", "random", "--trials", "1000000", "--timeout", str(seconds),
               "--seed", str(seed), "--no-progress"]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    duration = int(args.minutes * 60)
    database = f"tuner_soak_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    url = PG_SERVER.rsplit("/", 1)[0] + f"/{database}"
    logs = Path(tempfile.mkdtemp(prefix="tuner-soak-"))
    load_before = os.getloadavg()[0]
    tuners = [start_tuner(url, seed, duration + 120, logs / f"tuner{seed}.log") for seed in (1, 2)]
    engine = create_engine(url)
    server = None
    try:
        while True:  # the server needs a database with tuner tables and an answer to serve
            with contextlib.suppress(ProgrammingError, OperationalError):  # no tables yet
                if stored_trials(engine):
                    break
            if any(t.poll() is not None for t in tuners):
                raise SystemExit(f"a tuner exited early: see {logs}")
            time.sleep(1)
        port = free_port()
        server = subprocess.Popen([*TUNER, "serve", "--db", url, "--host", "127.0.0.1",
                                   "--port", str(port)], stdout=(logs / "serve.log").open("w"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        while True:
            try:
                if all(get(port, q)[0] == 200 for q, _, _ in QUERIES):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        lua = logs / "queries.lua"
        paths = ", ".join(json.dumps(f"/api/v1/best?{q}") for q, _, _ in QUERIES)
        lua.write_text(f"local paths = {{{paths}}}\nlocal i = 0\nrequest = function()\n"
                       f"  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n")
        checker = Checker(port)
        checker.start()
        memory: list[tuple[float, float | None]] = []
        started = time.monotonic()
        wrk = subprocess.Popen(["wrk", "-t2", f"-c{args.connections}", f"-d{duration}s",
                                "--timeout", "5s", "--latency", "-s", str(lua),
                                f"http://127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)
        while wrk.poll() is None:
            memory.append((round(time.monotonic() - started, 1), rss_mb(server.pid)))
            time.sleep(5)
        wrk_output = wrk.stdout.read()
        checker.stop.set()
        checker.join()
        for tuner in tuners:  # stop the writers, then compare every answer with `tuner best`
            if tuner.poll() is None:
                os.killpg(tuner.pid, signal.SIGINT)
        tuner_exits = [tuner.wait(timeout=120) for tuner in tuners]
        time.sleep(2 * RECHECK_S + 1)
        final = []
        for query, cli_args, _ in QUERIES:
            status, served = get(port, query)
            printed = json.loads(subprocess.run([*TUNER, "best", "--arch", "cpu", "--db", url,
                                                 *cli_args], capture_output=True, text=True,
                                                check=True).stdout)
            final.append({"query": query, "status": status,
                          "served": [served.get("provenance", {}).get("trial"), served.get("latency_s")],
                          "tuner_best": [printed["provenance"]["trial"], printed["latency_s"]],
                          "same": status == 200 and served["config"] == printed["config"]
                          and served["latency_s"] == printed["latency_s"]})
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=60)
        trials = stored_trials(engine)
        with engine.connect() as connection:
            total = connection.execute(text("SELECT count(*) FROM tuner_trials")).scalar()
    finally:
        for process in [*tuners, *([server] if server is not None else [])]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
    stale = stale_answers(checker.answers, trials)
    rss = [m for _, m in memory if m is not None]
    checked = [a for a in checker.answers if a[2] == 200]
    summary = {
        "minutes": args.minutes, "connections": args.connections, **wrk_figures(wrk_output),
        "checker_answers": len(checker.answers), "checker_non_200": len(checker.answers) - len(checked),
        "answers_that_changed": changes(checked),
        "stale_during": len(stale), "final_same_as_tuner_best": sum(f["same"] for f in final),
        "final_queries": len(final), "trials_stored": total, "ok_trials": len(trials),
        "tuner_exit_status": tuner_exits,
        "server_rss_mb": {"first": rss[0] if rss else None, "max": max(rss) if rss else None,
                          "last": rss[-1] if rss else None},
        "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
    }
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.node()} ({os.cpu_count()} cores, shared with other work)",
            "command": f"python bench/soak.py --minutes {args.minutes:g} --connections {args.connections}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "final": final, "stale": stale[:50],
         "memory_mb": memory, "wrk": wrk_output}, indent=2, default=str) + "\n")
    (args.out / "soak.md").write_text(markdown(meta, summary, final, memory, wrk_output))
    print(json.dumps(summary, indent=2))


def markdown(meta, s, final, memory, wrk_output) -> str:
    rss = s["server_rss_mb"]
    measures = [
        ("wrk requests (per second)", f"{s['requests']} ({s['requests_per_s']})"),
        ("wrk non-2xx responses, socket errors", f"{s['non_2xx']}, {s['socket_errors']}"),
        ("checker answers (non-200)", f"{s['checker_answers']} ({s['checker_non_200']})"),
        ("answers that moved to a new best during the soak", s["answers_that_changed"]),
        (f"stale answers during the soak (a faster fitting trial stored > {RECHECK_S + MARGIN_S:g} s before)",
         s["stale_during"]),
        ("answers equal to `tuner best` at the end", f"{s['final_same_as_tuner_best']} / {s['final_queries']}"),
        ("trials stored (ok) by the two tuners", f"{s['trials_stored']} ({s['ok_trials']})"),
        ("server resident memory: first sample, max, last (MB)",
         f"{rss['first']:.0f}, {rss['max']:.0f}, {rss['last']:.0f}"),
    ]
    lines = [
        *heading("Soak: tuner serve under wrk while two tuners write (bench/soak.py)",
                 f"{meta['date']}, {meta['machine']}; `{meta['command']}`; load average "
                 f"{s['load_before']} before, {s['load_after']} after.",
                 f"Two `tuner run --arch cpu --sampler random` on one study of a fresh PostgreSQL database "
                 f"(127.0.0.1), `tuner serve` on a loopback port, wrk at {s['connections']} connections for "
                 f"{s['minutes']:g} minutes over {len(QUERIES)} /best queries, a checker asking each query "
                 f"every 0.2 s beside it."),
        *table(("measure", "result"), measures),
        "", "Server memory every 5 s (seconds into the soak: MB):", "",
        ", ".join(f"{t:g}: {m:.0f}" for t, m in memory if m is not None), "",
        "wrk's report:", "", "```", wrk_output.strip(), "```", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
