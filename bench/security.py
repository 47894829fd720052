"""Security and staleness figures of issue #19, re-measured on this code.

    python bench/security.py [--kernels 250] [--out bench/results]   (writes security.{json,md})

1. Code-execution paths from HTTP: a study names a template that leaves a marker file when
   imported (and then calls sys.exit); every GET route of the app is asked (SQLite), and the
   routes after which the marker exists are counted.
2. Stale /best answers (the server rechecking on every request), each compared with a fresh
   reader: two PostgreSQL connections committing out of order, a hand-written DELETE of the best
   trial (SQLite and PostgreSQL), a SQLite file replaced by another.
3. Names and parameters: the answers to the requests and command lines the issue lists.
4. One-line errors: the command lines the issue lists, their exit status and stderr lines.
5. The measuring process: ``--kernels`` distinct C kernels compiled and measured one after the
   other in one process (the CPU backend, cache flush on), as a long study's measuring actor
   does: kernel shared objects mapped, resident memory, flush buffers allocated.
6. The OpenAPI documents under ``--token``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # the tests' fixtures; appended, so the installed tuner stays first

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from tests.api.conftest import PROBLEM, fill, record  # noqa: E402
from tests.api.test_best_freshness import plant, truth  # noqa: E402
from tests.api.test_reading_runs_no_code import every_get, planted_template  # noqa: E402
from tuner.api import Settings, create_app  # noqa: E402
from tuner.cli import main as cli  # noqa: E402
from tuner.db import Store  # noqa: E402
from tuner.kernel_templates import Source  # noqa: E402
from tuner.service import Service  # noqa: E402
from tuner.workers import Job, SpecRef, Status, TimingPolicy  # noqa: E402

PG_SERVER = os.environ.get("TUNER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BEST = "/api/v1/best?kernel=attention&arch=cpu"


def app_over(store: Store, **settings: Any) -> TestClient:
    return TestClient(create_app(lambda: Service(store), Settings(best_recheck_s=0.0, **settings)))


def served(client: TestClient) -> int:
    return client.get(BEST).json()["provenance"]["trial"]


def code_execution_paths(tmp: Path) -> dict[str, Any]:
    marker = tmp / "imported"
    template = planted_template(tmp, marker)
    ran = []
    with Store.open(f"sqlite:///{tmp / 'planted.db'}") as store:
        fill(store)
        study = store.ensure_study(name="planted", kernel="attention", backend="cpu",
                                   template_path=str(template), problem=PROBLEM, arch="cpu",
                                   device_name="cpu", sampler="tpe",
                                   directions=["minimize", "minimize"])  # no space: the 0001 case
        record(store, study, 0, {"exp": "poly3"}, Status.OK, 1e-3, 1e-5, PROBLEM)
        with app_over(store) as client:
            app_routes = every_get(client.app)
            for url in app_routes:
                query = "?param=exp=poly3" if url.endswith("/trials") else (
                    "?kernel=attention&arch=cpu" if url.endswith("/best") else "")
                client.get(url + query, follow_redirects=False)
                if marker.exists():
                    ran.append(url)
                    marker.unlink()
    return {"get_routes_asked": len(app_routes), "routes_that_ran_the_template": ran}


def stale_answers(tmp: Path, pg_url: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # out of order on PostgreSQL
    with Store.open(pg_url) as store, app_over(store) as client:
        fill(store)
        small = store.study("small").id
        engines = [create_engine(pg_url), create_engine(pg_url)]
        answers = [(served(client), truth(pg_url))]
        first = engines[0].connect()
        first.begin()
        plant(first, small, 100, 1e-4)

        def second() -> None:
            with engines[1].begin() as connection:
                plant(connection, small, 101, 5e-4)

        writer = threading.Thread(target=second)
        writer.start()
        writer.join(timeout=2)
        answers.append((served(client), truth(pg_url)))
        first.commit()
        first.close()
        writer.join()
        answers.append((served(client), truth(pg_url)))
        for engine in engines:
            engine.dispose()
    results["out_of_order_postgresql"] = {"answers": answers,
                                          "stale": sum(s != t for s, t in answers)}
    # a hand-written delete, on both databases
    for name, url in (("sqlite", f"sqlite:///{tmp / 'delete.db'}"), ("postgresql", pg_url)):
        with Store.open(url) as store:
            if store.study("small") is None:
                fill(store)
            with app_over(store) as client:
                before = served(client)
                engine = create_engine(url)
                with engine.begin() as connection:
                    connection.execute(text(
                        "DELETE FROM tuner_trials WHERE id = (SELECT t.id FROM tuner_trials t "
                        "JOIN tuner_studies s ON s.id = t.study_id WHERE s.name = 'small' "
                        "AND t.number = :n)"), {"n": before})
                engine.dispose()
                after = (served(client), truth(url))
        results[f"deleted_best_{name}"] = {"served_before": before, "after": after,
                                            "stale": int(after[0] != after[1])}
    # a replaced SQLite file
    served_file, other = tmp / "served.db", tmp / "other.db"
    for path in (served_file, other):
        with Store.open(f"sqlite:///{path}") as store:
            fill(store)
    engine = create_engine(f"sqlite:///{other}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE tuner_trials SET median_s = 1e-5 WHERE number = 2"))
    engine.dispose()
    url = f"sqlite:///{served_file}"
    with Store.open(url, create=False) as store, app_over(store) as client:
        before = served(client)
        os.replace(other, served_file)
        after = (served(client), truth(url))
    results["replaced_sqlite_file"] = {"served_before": before, "after": after,
                                       "stale": int(after[0] != after[1])}
    results["stale_total"] = sum(v["stale"] for v in results.values())
    return results


def run_cli(args: list[str]) -> dict[str, Any]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli(args)
        except SystemExit as exc:  # what the issue saw for a template calling sys.exit(3)
            code = f"SystemExit({exc.code})"
        except Exception as exc:  # noqa: BLE001 -- recorded: a traceback, as the issue saw
            code = f"raised {type(exc).__name__}"
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    return {"args": " ".join(a if len(a) < 40 else a[:20] + f"...({len(a)} chars)" for a in args),
            "exit": code, "stderr_lines": len(lines), "message": lines[-1][:160] if lines else ""}


def names_and_errors(tmp: Path) -> dict[str, Any]:
    db = f"sqlite:///{tmp / 'names.db'}"
    with Store.open(db) as store:
        fill(store)
        with app_over(store) as client:
            api = {path: client.get(path).status_code for path in (
                "/api/v1/studies/small%2Ffront", "/api/v1/studies/small/front",
                "/api/v1/studies/small/trials?param=unroll%22%29=1")}
    exits = tmp / "exits.py"
    exits.write_text("import sys\nsys.exit(3)\n")
    export_db = f"sqlite:///{tmp / 'names.db'}"
    commands = [
        ["run", "--arch", "cpu", "--study", "x/front", "--db", db],
        ["run", "--arch", "cpu", "--study", "a\x01b", "--db", db],
        ["run", "--arch", "cpu", "--study", "s" * 501, "--db", db],
        ["best", "--arch", "cpu", "--shape", "S=1" + "0" * 400, "--db", db],
        ["best", "--arch", "cpu", "--shape", "S=" + "9" * 5000, "--db", db],
        ["export", "--json", "/missing/dir/x.json", "--header", str(tmp / "x.h"), "--db", export_db],
        ["run", "--arch", "cpu", "--template", str(exits), "--db", db],
        ["run", "--arch", "cpu", "--timeout", "-1", "--db", db],
        ["run", "--arch", "cpu", "--trial-timeout", "-1", "--db", db],
    ]
    return {"api_status": api, "cli": [run_cli(c) for c in commands]}


def measuring_process(count: int) -> dict[str, Any]:
    from tests.test_cpu_backend import CPU, KERNELS, SIGNATURE, SPEC
    from tuner.workers import cpu

    def rss_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def mapped() -> int:
        cache = os.environ["TUNER_CACHE_DIR"]
        return len({line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                    if cache in line and line.endswith(".so")})

    allocated = []
    original = cpu._Flusher

    class Counted(original):
        def __init__(self) -> None:
            allocated.append(1)
            super().__init__()

    cpu._Flusher = Counted
    cpu._flusher.cache_clear()
    backend = cpu.CpuBackend()
    policy = TimingPolicy(warmup_s=0.001, budget_s=0.002, min_repeats=3, flush_l2=True)
    rss, maps = [], []
    try:
        for variant in range(count):
            code = f"#include <stdint.h>\n{SIGNATURE}\n{KERNELS['correct']}\n/* {variant} */\n"
            source = Source("c", code, "scale2", options=("-O2",), scalars=(("int64", 1000),))
            job = Job(variant, SpecRef("scale2", "cpu"), {"kernel": "correct"}, {"n": 1000}, CPU,
                      source, seed=variant)
            result = backend.measure(job, backend.compile(source, CPU), SPEC, policy)
            assert result.status is Status.OK, result.reason
            rss.append(round(rss_mb(), 1))
            maps.append(mapped())
    finally:
        cpu._Flusher = original
        cpu._flusher.cache_clear()
    return {"kernels_measured": count, "kernel_objects_mapped_max": max(maps),
            "kernel_objects_mapped_last": maps[-1], "rss_mb_first": rss[0], "rss_mb_min": min(rss),
            "rss_mb_max": max(rss), "rss_mb_last": rss[-1], "flush_buffers_allocated": len(allocated),
            "flush_buffer_mb": round(cpu._last_level_cache_bytes() / 2**20)}


def documents_under_token(tmp: Path) -> dict[str, int]:
    with (Store.open(f"sqlite:///{tmp / 'token.db'}") as store,
          TestClient(create_app(lambda: Service(store), Settings(token="s3cret"))) as client):
        return {path: client.get(path).status_code for path in ("/docs", "/redoc", "/openapi.json")}


@contextlib.contextmanager
def pg_database():
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    name = f"tuner_security_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_SERVER.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=250)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tuner-security-"))
    os.environ["TUNER_CACHE_DIR"] = str(tmp / "cache")
    load_before = os.getloadavg()[0]
    try:
        with pg_database() as pg_url:
            figures = {"code_execution": code_execution_paths(tmp),
                       "stale": stale_answers(tmp, pg_url),
                       "names_and_errors": names_and_errors(tmp),
                       "documents_under_token": documents_under_token(tmp),
                       "measuring_process": measuring_process(args.kernels)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures["meta"] = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       "machine": f"{platform.node()} ({os.cpu_count()} cores)",
                       "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
                       "command": f"python bench/security.py --kernels {args.kernels}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "security.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
