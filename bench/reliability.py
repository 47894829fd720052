"""The reliability table: faults injected and survived, trials lost, bad inputs, server errors.

    python bench/reliability.py [--out bench/results]                    (CPU: reliability.{json,md})
    python3 -P bench/reliability.py --backend cuda --out DIR             (GPU: reliability_gpu.{json,md})

1. A 40-trial study of the planted-fault template (a quarter of its variants crash or never return)
   and a fault-free study of its healthy variants, both with --remeasure so that every trial runs:
   every trial must end (completed + failed + pruned = proposed) and be stored once, each fault
   with its expected label; each healthy variant's median over its trials in the fault study must
   be within 5% of its median in the fault-free one. On the CPU the two studies take turns (each
   resumed with a fresh seed), so that whatever else loads the machine weighs on both alike.
2. (CPU only) Every kind of bad command-line input the tests know, each expected to exit 2.
3. (CPU only) schemathesis over the REST API's OpenAPI schema (tests/api/test_schemathesis.py): 5xx seen.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # bench.fault_table; appended, so the installed tuner stays first

from bench.fault_table import Accounting, account  # noqa: E402
from bench.security_section import rewrite as rewrite_security_section  # noqa: E402
from tuner.db import TrialRecord  # noqa: E402

TEMPLATES = ROOT / "kernel_templates" / "testing"
TOLERANCE = 0.05  # healthy medians, fault study against fault-free study
BAD_INPUTS = [
    ["run", "--kernel", "nope"], ["run", "--arch", "sm_12"], ["run", "--arch", "cpu", "--shape", "X=1"],
    ["run", "--arch", "cpu", "--shape", "B"], ["run", "--arch", "cpu", "--shape", "B=abc"],
    ["run", "--arch", "cpu", "--shape", "S=0"], ["run", "--arch", "cpu", "--trials", "0"],
    ["run", "--arch", "cpu", "--sampler", "magic"], ["run", "--arch", "cpu", "--template", "/no/such.py"],
    ["best", "--arch", "cpu", "--kernel", "nope"], ["show", "no-such-study"],
    ["run", "--arch", "cpu", "--db", "postgresql+psycopg://tuner:secret@127.0.0.1:1/x"],
    ["serve", "--port", "70000"],
]


@dataclass(frozen=True)
class Setup:
    """How one backend runs the fault section."""

    backend: str
    arch: str
    shape: str  # the problem: a healthy run of tens of microseconds or more
    trial_timeout_s: float  # the floor of the hang timeout (it grows with the slowest healthy trial)
    turns: int  # the two studies alternate in this many turns
    seed: int  # the first turn's seed (then +1 a turn): the 40 proposals hold 10 planted faults, a quarter
    stem: str  # results file name
    method: str  # why the comparison is set up so, for the results file
    fault_trials: int = 40
    clean_trials: int = 36


SETUPS = {
    "cpu": Setup("cpu", "cpu", shape="n=2048,rounds=64", trial_timeout_s=8, turns=4, seed=24, clean_trials=60,
                 stem="reliability", method=(
        "The healthy kernel is bound by arithmetic on 16 KB (faulty.c, rounds=64), not by memory bandwidth, "
        "which every process on the machine shares: the trial medians of the memory-bound kernel (8 MB from "
        "DRAM a run) spread wider and move with another process streaming memory "
        "(bench/results/reliability_noise.md). The two studies take turns, so that load from other processes, "
        "which comes and goes over minutes, weighs on both alike; the fault-free one has 60 trials, so that its "
        "medians rest on 6 or more trials a variant (the fault study's on 4 or more). The memory-bound kernel "
        "misses 5% under this setup, alone and beside a memory stream; the arithmetic-bound one holds it in both "
        "(bench/results/reliability_stress.md). Yet a median over 4 to 6 trials has little room: when other "
        "processes slow many trials of both studies alike, it can land on slow ones, so 5% is shown here at the "
        "load these runs saw (load averages in the files), not under any load. The GPU run "
        "(reliability_gpu.md) is the one to judge 5% by.")),
    "cuda": Setup("cuda", "sm_90a", shape=f"n={1 << 25}", trial_timeout_s=3, turns=1, seed=213, clean_trials=24,
                  stem="reliability_gpu", method=(
        "The healthy kernel streams 256 MB through HBM a run (n=2^25). Each study is one uninterrupted run. "
        "Each fault costs a fresh measuring process, a hang its timeout too: the seed's 10 faults are 8 "
        "illegal-address writes and 2 hangs, and the fault-free study has 24 trials (H100 medians of this "
        "kernel move by 0.1% between trials), which keeps the run within 3 minutes.")),
}


def tune(setup: Setup, db: str, kind: str, trials: int, seed: int, cwd: str) -> float:
    """One `tuner run` of the ``kind`` ("faulty" or "healthy") template; its wall seconds."""
    started = time.monotonic()
    # Run outside the repository (cwd), as a user would: its plain tuner/ folder must not shadow
    # the installed package.
    done = subprocess.run([sys.executable, "-m", "tuner", "run", "--arch", setup.arch,
                           "--template", str(TEMPLATES / f"{kind}_{setup.backend}.py"), "--shape", setup.shape,
                           "--db", db, "--study", kind, "--sampler", "random", "--seed", str(seed),
                           "--trials", str(trials), "--trial-timeout", str(setup.trial_timeout_s),
                           "--remeasure", "--no-progress"], capture_output=True, text=True, timeout=900, cwd=cwd)
    if done.returncode != 0:
        raise SystemExit(f"tuner run ({kind}) exited {done.returncode}:\n{done.stdout}{done.stderr}")
    wall = time.monotonic() - started
    print(f"{kind}: {trials} trials in {wall:.0f} s", file=sys.stderr)
    return wall


def shares(total: int, turns: int) -> list[int]:
    """``total`` trials split into ``turns`` near-equal parts."""
    return [total // turns + (turn < total % turns) for turn in range(turns)]


def healthy_ratios(faulty: list[TrialRecord], clean: list[TrialRecord]) -> dict[str, dict[str, Any]]:
    """Per healthy variant: median over its measured trials in each study, and their ratio."""
    def medians_us(rows: list[TrialRecord], variant: str) -> list[float]:
        """The variant's measured trial medians in trial order."""
        return [round(r.median_s * 1e6, 2) for r in sorted(rows, key=lambda r: r.number)
                if r.config["variant"] == variant and r.status == "ok" and r.reused_from is None]

    table = {}
    for variant in sorted({r.config["variant"] for r in clean}):
        with_faults, without = medians_us(faulty, variant), medians_us(clean, variant)
        if with_faults and without:
            ratio = median(with_faults) / median(without)
            table[variant] = {"faulty_median_us": median(with_faults), "clean_median_us": median(without),
                              "ratio": ratio, "within_5pct": abs(ratio - 1) <= TOLERANCE,
                              "faulty_trials_us": with_faults, "clean_trials_us": without}
    return table


def slow_shares(ratios: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Per study, the share of healthy trials more than 5% slower than their variant's fastest trial
    in either study. Load from outside slows both studies alike; faults that disturbed the healthy
    trials after them would make the fault study's share the larger."""
    floors = {v: min(r["faulty_trials_us"] + r["clean_trials_us"]) for v, r in ratios.items()}
    shares_by_study = {}
    for study, key in (("faulty", "faulty_trials_us"), ("healthy", "clean_trials_us")):
        trials = [(v, t) for v, r in ratios.items() for t in r[key]]
        slow = sum(t > floors[v] * (1 + TOLERANCE) for v, t in trials)
        shares_by_study[study] = slow / len(trials) if trials else 0.0
    return shares_by_study


def fault_section(setup: Setup, db: str) -> dict[str, Any]:
    walls = {"faulty": 0.0, "healthy": 0.0}
    with tempfile.TemporaryDirectory() as cwd:
        for turn, (faulty, clean) in enumerate(zip(shares(setup.fault_trials, setup.turns),
                                                   shares(setup.clean_trials, setup.turns), strict=True)):
            walls["faulty"] += tune(setup, db, "faulty", faulty, setup.seed + turn, cwd)
            walls["healthy"] += tune(setup, db, "healthy", clean, setup.seed + turn, cwd)
    books, clean = account(db, "faulty"), account(db, "healthy")
    ratios = healthy_ratios(books.rows, clean.rows)
    return {"backend": setup.backend, "environment": _environment(setup, clean.rows), "method": setup.method,
            "trials": {"faulty": setup.fault_trials, "healthy": setup.clean_trials}, "turns": setup.turns,
            "seeds": [setup.seed + turn for turn in range(setup.turns)],
            "wall_s": {**{kind: round(wall, 1) for kind, wall in walls.items()}, "both": round(sum(walls.values()), 1)},
            "studies": {"faulty": _accounting(books), "healthy": _accounting(clean)},
            "sm_clock_mhz_median": _clocks(books.rows, clean.rows),
            "healthy_ratio_faulty_over_clean": ratios, "slow_trial_share": slow_shares(ratios),
            "healthy_within_5pct": bool(ratios) and all(r["within_5pct"] for r in ratios.values())}


def _accounting(books: Accounting) -> dict[str, Any]:
    return {"proposed": books.proposed, "by_state": books.states, "accounted": books.accounted,
            "stored": books.stored, "lost": books.lost, "faults_injected": books.faults_injected,
            "mislabelled": books.mislabelled, "outcomes": books.outcomes, "fault_reasons": books.fault_reasons,
            "ok": books.ok}


def _environment(setup: Setup, rows: list[TrialRecord]) -> dict[str, Any]:
    """What measured, as its measuring process recorded it, with the date, the load average at the end
    (and the GPU driver)."""
    measured = next((r.environment for r in rows if r.status == "ok"), {})
    env = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "arch": setup.arch,
           "problem": setup.shape, "python": platform.python_version(),
           "load_average_1_5_15_min": tuple(round(x, 1) for x in os.getloadavg()),
           **{k: v for k, v in measured.items() if k != "ray_node"}}
    if setup.backend == "cuda":
        env["nvidia_driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, check=False).stdout.strip()
    return env


def _clocks(faulty: list[TrialRecord], clean: list[TrialRecord]) -> dict[str, float] | None:
    """The median SM clock the healthy trials ran at, per study (GPU only: NVML's reading)."""
    clocks = {study: [r.clock_mhz for r in rows if r.status == "ok" and r.clock_mhz]
              for study, rows in (("faulty", faulty), ("healthy", clean))}
    return {study: median(values) for study, values in clocks.items() if values} or None


def bad_input_section() -> dict[str, Any]:
    clean_exits = 0
    with tempfile.TemporaryDirectory() as tmp:
        for args in BAD_INPUTS:
            db = [] if "--db" in args else ["--db", f"sqlite:///{tmp}/bad.db"]
            done = subprocess.run([sys.executable, "-m", "tuner", *args, *db], capture_output=True,
                                  text=True, timeout=120, cwd=tmp)
            lines = done.stderr.strip().splitlines()
            clean_exits += done.returncode == 2 and lines[-1].startswith("tuner: error:")
        written = Path(tmp, "bad.db").exists()
    return {"bad_inputs_tried": len(BAD_INPUTS), "bad_inputs_clean_exit_2": clean_exits,
            "bad_inputs_wrote_a_database": written}


def server_error_section() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "api" / "test_schemathesis.py")],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    return {"schemathesis_passed": done.returncode == 0,
            "schemathesis_summary": done.stdout.strip().splitlines()[-1] if done.stdout else ""}


def markdown(table: dict[str, Any]) -> str:
    lines = [f"# Reliability: planted faults on the {'GPU' if table['backend'] == 'cuda' else 'CPU'}", "",
             "; ".join(f"{k} {v}" for k, v in table["environment"].items()), "", table["method"], "",
             f"The fault study ({table['trials']['faulty']} trials) and the fault-free study "
             f"({table['trials']['healthy']} trials of the "
             f"healthy variants) ran in {table['turns']} alternating turn(s) (seeds {table['seeds']}), every "
             f"trial measured (--remeasure); wall seconds {table['wall_s']}.", "",
             "| study | proposed | by Optuna state | ended | stored | lost | faults injected | mislabelled |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for study, b in table["studies"].items():
        lines.append(f"| {study} | {b['proposed']} | {b['by_state']} | {b['accounted']} | {b['stored']} | "
                     f"{b['lost']} | {b['faults_injected']} | {b['mislabelled']} |")
    lines += ["", "| fault | a stored reason |", "| --- | --- |"]
    reasons = table["studies"]["faulty"]["fault_reasons"]
    lines += [f"| {label} | {_cell(reason)} |" for label, reason in reasons.items()]
    clocks = table["sm_clock_mhz_median"]
    lines += ["", f"Healthy medians, fault study over fault-free study (goal: within {TOLERANCE:.0%})"
              + (f"; median SM clock (MHz) {clocks}" if clocks else "") + ":", "",
              "| variant | with faults (µs, trials) | without (µs, trials) | ratio | within 5% |",
              "| --- | --- | --- | --- | --- |"]
    for variant, r in table["healthy_ratio_faulty_over_clean"].items():
        lines.append(f"| {variant} | {r['faulty_median_us']:.1f} ({len(r['faulty_trials_us'])}) | "
                     f"{r['clean_median_us']:.1f} ({len(r['clean_trials_us'])}) | {r['ratio']:.3f} | "
                     f"{r['within_5pct']} |")
    slow = table["slow_trial_share"]
    lines += ["", f"**healthy within 5%: {table['healthy_within_5pct']}**", "",
              f"Healthy trials more than 5% slower than their variant's fastest trial in either study: "
              f"{slow['faulty']:.0%} of the fault study's, {slow['healthy']:.0%} of the fault-free study's "
              "(faults that disturbed the trials after them would make the first the larger)."]
    rest = {k: v for k, v in table.items() if k.startswith(("bad_inputs", "schemathesis"))}
    if rest:
        lines += ["", "| measure | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rest.items()]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """``text`` as one markdown table cell: its first line, pipes escaped."""
    return (text.splitlines() or [""])[0].replace("|", "\\|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=tuple(SETUPS), default="cpu")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    setup, out = SETUPS[args.backend], Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        table = fault_section(setup, f"sqlite:///{tmp}/reliability.db")
    if setup.backend == "cpu":
        table.update(host=platform.node(), cpu_count=os.cpu_count(), **bad_input_section(), **server_error_section())
    (out / f"{setup.stem}.json").write_text(json.dumps(table, indent=2) + "\n")
    text = markdown(table)
    (out / f"{setup.stem}.md").write_text(text)
    if setup.backend == "cpu":  # the security and staleness figures, from their own benches
        rewrite_security_section(out / f"{setup.stem}.md", out)
    print(text)
    ok = all(books["ok"] for books in table["studies"].values()) and table["healthy_within_5pct"]
    if setup.backend == "cpu":
        ok = ok and table["bad_inputs_clean_exit_2"] == len(BAD_INPUTS) and table["schemathesis_passed"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
