"""Load test of `tuner serve`: /api/v1/best against the constant /healthz, with wrk on loopback.

Serves a database of synthetic trials (bench/gen_trials.py; 10,000 by default) with one uvicorn
worker, drives each endpoint with wrk (64 connections), and reports requests/s and p50/p99
latency side by side, the best-config rows also as a share of the constant endpoint's rate.
With --browser it first times the study page in headless Chromium until its plots are drawn:
each round a fresh server process and a fresh browser profile, so the round's first load finds
every cache cold, then loads it twice more with the browser's cache warm; and it times how long
a fresh browser takes to load and run each plotly.js bundle: the full one inside the plotly
wheel, and the smaller one the dashboard serves.

    python bench/api_load.py --browser            # writes bench/results/api_load.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/gen_trials.py and the test suite's browser helper

from bench.gen_trials import generate  # noqa: E402
from tuner.db import Store  # noqa: E402

STUDY = "synthetic-10k"
ENDPOINTS = {
    "healthz (constant)": "/healthz",
    "best, exact shape": "/api/v1/best?kernel=attention&arch=cpu&shape=S=256",
    "best, nearest shape": "/api/v1/best?kernel=attention&arch=cpu&shape=S=300&shape=D=48",
}
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def start_server(db_url: str, port: int) -> subprocess.Popen:
    code = f"from tuner.api import serve; serve({db_url!r}, port={port})"
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not answer /healthz within 30 s")


def wrk(url: str, connections: int, threads: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    def latency(percentile: str) -> float:
        value, unit = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)$", out, re.M).groups()
        return float(value) * UNITS[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": latency("50"), "p99_ms": latency("99"),
            "errors": int(non_2xx.group(1)) if non_2xx else 0}


# Milliseconds since navigation started: scripts run (DOMContentLoaded), trials loaded, plots
# drawn; and the bytes the page's requests transferred.
PAGE_TIMINGS = """
const navigation = performance.getEntriesByType("navigation")[0];
const bytes = performance.getEntriesByType("resource").reduce((n, r) => n + r.transferSize,
                                                              navigation.transferSize);
return {scripts: navigation.domContentLoadedEventStart, loaded: window.tunerTimings.loaded,
        drawn: window.tunerTimings.drawn, bytes};
"""


def page_timings(base: str, loads: int = 3) -> list[dict[str, float]]:
    """Timings of ``loads`` loads of the study page in one fresh browser (the first one cold)."""
    from tests.api import browser

    timings = []
    with browser.chromium(height=1700) as driver:
        for _ in range(loads):
            driver.get(f"{base}/studies/{STUDY}")
            deadline = time.monotonic() + 60
            while not driver.execute_script("return window.tunerReady === true"):
                if time.monotonic() > deadline:
                    raise SystemExit("the study page was not drawn within 60 s")
                time.sleep(0.02)
            timings.append(driver.execute_script(PAGE_TIMINGS))
    return timings


def page_rounds(db_url: str, port: int, rounds: int) -> list[list[dict[str, float]]]:
    """:func:`page_timings` of ``rounds`` rounds, each on a server process of its own."""
    result = []
    for _ in range(rounds):
        server = start_server(db_url, port)
        try:
            result.append(page_timings(f"http://127.0.0.1:{port}"))
        finally:
            stop(server)
    return result


def bundle_timings(rounds: int) -> dict[str, dict]:
    """Milliseconds from navigation until a fresh browser has loaded (from disk) and run each
    plotly.js bundle, ``rounds`` times each, with its size in bytes."""
    from importlib.resources import files

    from tests.api import browser
    from tuner.api.routes_dashboard import PLOTLY_JS

    wheel = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
    bundles = {"full, inside the plotly wheel": wheel, f"gl2d, served ({PLOTLY_JS.name})": PLOTLY_JS}
    folder = Path(tempfile.mkdtemp(prefix="tuner-bundles-"))
    result = {}
    for name, path in bundles.items():
        page = folder / f"{path.name}.html"
        page.write_text(f'<script src="{path.as_uri()}"></script>'
                        f'<script>window.ran = performance.now();</script>')
        result[name] = {"bytes": path.stat().st_size, "ms": []}
        for _ in range(rounds):
            with browser.chromium() as driver:
                driver.get(page.as_uri())
                result[name]["ms"].append(driver.execute_script("return window.ran"))
    shutil.rmtree(folder)
    return result


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=10)


def markdown(result: dict) -> str:
    base = result["endpoints"]["healthz (constant)"]["requests_per_s"]
    lines = [f"# API load ({result['trials']} synthetic trials, {result['connections']} connections, "
             f"one uvicorn worker, {result['cpus']} CPUs, wrk on loopback)", "",
             f"Load average (1 min) before the run: {result['load_average_before']:.1f}, after it: "
             f"{result['load_average_after']:.1f}. Repeated best queries are answered by the ASGI fast path "
             f"(api/best_fast_path.py) from the best cache; /healthz goes through FastAPI's routing.", "",
             "| endpoint | req/s | share of constant | p50 ms | p99 ms | non-2xx |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, row in result["endpoints"].items():
        lines.append(f"| {name} | {row['requests_per_s']:.0f} | {row['requests_per_s'] / base:.0%} | "
                     f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} |")
    rounds = result.get("study_page_ms", [])
    if rounds:
        lines += ["", f"## Study page of {result['trials']} trials in headless Chromium", "",
                  "Each round starts a fresh server process and a fresh browser profile: its first "
                  "load finds every cache cold; loads 2 and 3 reuse the browser's cache. "
                  "Milliseconds after navigation: scripts run (DOMContentLoaded), trials loaded, "
                  "plots drawn (the page is interactive).", "",
                  "| round | load | scripts run | trials loaded | plots drawn | KiB transferred |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r, loads in enumerate(rounds, 1):
            for i, t in enumerate(loads, 1):
                lines.append(f"| {r} | {i}{' (cold)' if i == 1 else ''} | {t['scripts']:.0f} | "
                             f"{t['loaded']:.0f} | {t['drawn']:.0f} | {t['bytes'] / 1024:.0f} |")
        cold = sorted(loads[0]["drawn"] for loads in rounds)
        lines += ["", f"Cold first loads: plots drawn at {', '.join(f'{c:.0f}' for c in cold)} ms "
                      f"(median {statistics.median(cold):.0f} ms, worst {cold[-1]:.0f} ms)."]
    bundles = result.get("plotly_bundles", {})
    if bundles:
        lines += ["", "## plotly.js bundles, each loaded from disk and run by a fresh browser", "",
                  "| bundle | KiB | ms after navigation, each round | median ms |", "|---|---:|---|---:|"]
        for name, row in bundles.items():
            each = ", ".join(f"{ms:.0f}" for ms in row["ms"])
            lines.append(f"| {name} | {row['bytes'] / 1024:.0f} | {each} | "
                         f"{statistics.median(row['ms']):.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a fresh one of --trials synthetic trials)")
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--browser", action="store_true", help="also time the study page in Chromium")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of study page loads, each on a fresh server and browser")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api_load")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    db_url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='tuner-load-')}/load.db"
    if args.db is None:
        with Store.open(db_url) as store:
            generate(store, STUDY, args.trials)
    result = {"trials": args.trials, "connections": args.connections, "cpus": _cpus(),
              "load_average_before": os.getloadavg()[0], "python": platform.python_version(),
              "endpoints": {}}
    if args.browser:
        result["study_page_ms"] = page_rounds(db_url, args.port, args.rounds)
        result["plotly_bundles"] = bundle_timings(args.rounds)
    server = start_server(db_url, args.port)
    try:
        base = f"http://127.0.0.1:{args.port}"
        for name, path in ENDPOINTS.items():
            urllib.request.urlopen(base + path).read()  # warm: the first best answer fills the cache
            result["endpoints"][name] = wrk(base + path, args.connections, args.threads, args.seconds)
    finally:
        stop(server)
    result["load_average_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
