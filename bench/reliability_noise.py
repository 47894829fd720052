"""Why healthy medians move between runs on a small shared CPU machine, and how much, per kernel.

    python bench/reliability_noise.py [--out bench/results]      (reliability_noise.{json,md})

The healthy variants of the C fault template, measured back to back in this one process through
the CPU backend (cache flushed and output poisoned before every timed run, as in a study), five
trials a variant: once bound by memory bandwidth (rounds=0, n=1M: 8 MB from DRAM a run, the
kernel bench/reliability.py used to time), once bound by arithmetic (rounds=64, n=2048: 16 KB);
each alone (with whatever else the machine runs) and beside a process streaming memory.
Per cell: the spread of the trial medians of each variant, and the timed repeats a trial got.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any

from tuner.kernel_templates import Target, load_spec_file
from tuner.workers import Job, SpecRef, TimingPolicy, get_backend
from tuner.workers.executor import compile_job, measure_job

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "kernel_templates" / "testing" / "healthy_cpu.py"
KERNELS = {"memory-bound (rounds=0, n=1048576)": {"n": 1 << 20, "rounds": 0},
           "arithmetic-bound (rounds=64, n=2048)": {"n": 2048, "rounds": 64}}
TRIALS = 5  # per variant and cell
STREAM = ("import numpy as np\na = np.ones(8 << 20); b = np.empty_like(a)\n"
          "while True: np.copyto(b, a)\n")  # 64 MB copied over and over: DRAM traffic


def trials(problem: dict[str, int]) -> dict[str, list[Any]]:
    """Per variant, the Timing of TRIALS measurements, the variants taking turns."""
    spec = load_spec_file(str(TEMPLATE))
    ref, policy = SpecRef(spec.name, "cpu", str(TEMPLATE)), TimingPolicy()
    problem = spec.validate_problem(problem)
    timings: dict[str, list[Any]] = {v: [] for v in spec.params[0].choices}
    for number in range(TRIALS * len(timings)):
        config = {"variant": list(timings)[number % len(timings)]}
        job = Job(trial_id=number, spec=ref, config=config, problem=problem, target=Target.documented("cpu"),
                  source=spec.render(config, problem), seed=number)
        measurement = measure_job(job, compile_job(job), policy)
        timings[config["variant"]].append(measurement.timing)
    return timings


@contextmanager
def memory_stream(on: bool) -> Iterator[None]:
    """While inside: (if ``on``) another process copying memory over and over."""
    stream = subprocess.Popen([sys.executable, "-c", STREAM]) if on else None
    try:
        yield
    finally:
        if stream is not None:
            stream.kill()
            stream.wait()


def cell(problem: dict[str, int], streaming: bool) -> dict[str, Any]:
    with memory_stream(streaming):
        timings = trials(problem)
    per_variant = {}
    for variant, runs in timings.items():
        medians = [t.median_s for t in runs]
        per_variant[variant] = {"trial_medians_us": [round(m * 1e6, 1) for m in medians],
                                "max_over_min": max(medians) / min(medians)}
    spreads = [v["max_over_min"] for v in per_variant.values()]
    return {"median_us": median(t.median_s for runs in timings.values() for t in runs) * 1e6,
            "worst_max_over_min": max(spreads), "median_max_over_min": median(spreads),
            "repeats_per_trial": median(t.repeats for runs in timings.values() for t in runs),
            "variants": per_variant}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    out = Path(parser.parse_args().out)
    load_before = os.getloadavg()
    cells = {f"{kernel}, {'beside a memory stream' if streaming else 'alone'}": cell(problem, streaming)
             for kernel, problem in KERNELS.items() for streaming in (False, True)}
    table = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
             "cpu": get_backend("cpu").environment()["device"], "cpu_count": os.cpu_count(),
             "load_average_before": load_before, "load_average_after": os.getloadavg(), "cells": cells}
    (out / "reliability_noise.json").write_text(json.dumps(table, indent=2) + "\n")
    loads = " / ".join(", ".join(f"{x:.1f}" for x in table[k]) for k in ("load_average_before", "load_average_after"))
    lines = [f"# Healthy-kernel timing noise: {table['cpu']}, {table['cpu_count']} CPUs, {table['date']}", "",
             f"Load average (1, 5, 15 min) before / after: {loads}.", "",
             f"{TRIALS} trials per variant, 6 variants; spread = a variant's slowest trial median over "
             "its fastest.", "",
             "| kernel, condition | median (µs) | median spread | worst spread | timed repeats a trial |",
             "| --- | --- | --- | --- | --- |"]
    for name, c in cells.items():
        lines.append(f"| {name} | {c['median_us']:.1f} | {c['median_max_over_min']:.3f} | "
                     f"{c['worst_max_over_min']:.3f} | {c['repeats_per_trial']:.0f} |")
    (out / "reliability_noise.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
