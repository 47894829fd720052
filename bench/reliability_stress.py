"""bench/reliability.py's fault section on the CPU for both healthy kernels, alone and beside a memory stream.

    python bench/reliability_stress.py [--out bench/results]     (reliability_stress.{json,md})

The same 40-trial fault study and 60-trial fault-free study, taking turns, four times: with the
healthy kernel bound by memory bandwidth (rounds=0, n=1M, the kernel bench/reliability.py used
to time) and by arithmetic (rounds=64, n=2048, the one it times now), each alone (with whatever
else the machine runs) and beside a process streaming memory for the whole time. Shows which of
the two keeps the healthy medians of a fault study within 5% of a fault-free one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # bench.*; appended, so the installed tuner stays first

from bench.reliability import SETUPS, TOLERANCE, fault_section  # noqa: E402
from bench.reliability_noise import memory_stream  # noqa: E402

SHAPES = {"memory-bound": "n=1048576,rounds=0", "arithmetic-bound": "n=2048,rounds=64"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    out = Path(parser.parse_args().out)
    cells = {}
    for kernel, shape in SHAPES.items():
        for streaming in (False, True):
            name = f"{kernel} ({shape}), {'beside a memory stream' if streaming else 'alone'}"
            with tempfile.TemporaryDirectory() as tmp, memory_stream(streaming):
                table = fault_section(replace(SETUPS["cpu"], shape=shape), f"sqlite:///{tmp}/stress.db")
            cells[name] = {"load_average_after": os.getloadavg(), "wall_s": table["wall_s"],
                           "accounted": {k: b["ok"] for k, b in table["studies"].items()},
                           "healthy_within_5pct": table["healthy_within_5pct"],
                           "slow_trial_share": table["slow_trial_share"],
                           "ratios": table["healthy_ratio_faulty_over_clean"]}
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "environment": table["environment"], "cells": cells}
    (out / "reliability_stress.json").write_text(json.dumps(result, indent=2) + "\n")
    variants = list(next(iter(cells.values()))["ratios"])
    lines = [f"# Healthy medians of a fault study over a fault-free one, CPU, {result['date']}", "",
             f"{table['environment']['device']}, {table['environment']['cpu_count']} CPUs; goal: every ratio "
             f"within {TOLERANCE:.0%} of 1. Ratios per healthy variant (bench/reliability.py's setup, seeds "
             f"{table['seeds']}); every trial of every study accounted for and labelled: "
             f"{all(all(c['accounted'].values()) for c in cells.values())}.", "",
             "Slow trials: the share of each study's healthy trials more than 5% slower than their variant's "
             "fastest trial in either study, fault study / fault-free study.", "",
             "| kernel, condition | " + " | ".join(variants) + " | within 5% | slow trials | load average after |",
             "| --- | " + "--- | " * (len(variants) + 3)]
    for name, c in cells.items():
        ratios = " | ".join(f"{c['ratios'][v]['ratio']:.3f}" if v in c["ratios"] else "" for v in variants)
        slow = f"{c['slow_trial_share']['faulty']:.0%} / {c['slow_trial_share']['healthy']:.0%}"
        lines.append(f"| {name} | {ratios} | {c['healthy_within_5pct']} | {slow} | {c['load_average_after'][0]:.1f} |")
    (out / "reliability_stress.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
