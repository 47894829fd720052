"""How long ray.init holds the GIL in native code: the time a Ctrl-C while Ray starts may wait.

    python bench/ray_init_gil.py [--runs 5] [--out bench/results]   (writes ray_init_gil.{json,md})

`tuner run` ends on a Ctrl-C during its start from a thread of its own (tuner.interrupts), which
needs the GIL. Each run starts a local Ray as `tuner run` does (tuner.workers.ray_executor.init_ray)
in a fresh process while a thread wakes every 5 ms; a wake-up more than 0.15 s late means the
main thread held the GIL that long, and the main thread's stack just after says where.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # bench.report; appended, so the installed tuner stays first

from bench.report import heading, table  # noqa: E402

LATE_S = 0.15
PROBE = f"""
import json, sys, threading, time, traceback
main = threading.main_thread().ident
stalls = []
def wake():
    last = time.monotonic()
    while True:
        time.sleep(0.005)
        now = time.monotonic()
        if now - last > {LATE_S}:
            frames = traceback.extract_stack(sys._current_frames()[main])
            where = [f"{{f.filename.split('site-packages/')[-1]}}:{{f.lineno}}" for f in frames[-3:]]
            stalls.append([round(now - last, 2), " <- ".join(reversed(where))])
        last = now
threading.Thread(target=wake, daemon=True).start()
from tuner.workers.ray_executor import init_ray
import ray
start = time.monotonic()
init_ray(None)
took = time.monotonic() - start
ray.shutdown()
print(json.dumps({{"init_s": round(took, 2), "stalls": stalls}}))
"""


def markdown(meta: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    longest = max((s[0] for r in runs for s in r["stalls"]), default=0.0)
    rows = []
    for i, run in enumerate(runs):
        stalls = sorted(run["stalls"], reverse=True)
        worst = f"{stalls[0][0]} s, after {stalls[0][1]}" if stalls else "none"
        rows.append((i, run["init_s"], worst, len(stalls) - 1 if stalls else 0,
                     round(sum(s[0] for s in stalls[1:]), 2)))
    lines = [*heading("ray.init holding the GIL (bench/ray_init_gil.py)",
                      f"{meta['date']}, {meta['machine']}, load average {meta['load_before']} before and "
                      f"{meta['load_after']} after; `{meta['command']}`.",
                      f"{len(runs)} starts of a local Ray as `tuner run` makes one; a thread waking every "
                      f"5 ms found the GIL held over {LATE_S} s for the stretches below (the longest: "
                      f"{longest} s; ray_init_gil.json has all, imports included); ray/_private/worker.py:2729 "
                      f"makes the driver's CoreWorker. A Ctrl-C in such a stretch ends the run when it is over."),
             *table(("start", "ray.init (s)", "longest stretch (the main thread's stack just after)",
                     "other stretches", "their sum (s)"), rows)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    runs = []
    for _ in range(args.runs):
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.node()} ({os.cpu_count()} cores, shared with other work)",
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "command": f"python bench/ray_init_gil.py --runs {args.runs}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_init_gil.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2) + "\n")
    (args.out / "ray_init_gil.md").write_text(markdown(meta, runs))


if __name__ == "__main__":
    main()
