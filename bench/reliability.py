"""The reliability table: faults injected and survived, trials lost, bad inputs, server errors.

    python bench/reliability.py [--out bench/results]

1. A 40-trial CPU study of the planted-fault template (a quarter of its variants write out of
   bounds or never return), then a fault-free study of its healthy variants, re-measured: every
   trial must be accounted for, and the healthy variants' medians are compared across the two.
2. Every kind of bad command-line input the tests know, each expected to exit 2.
3. schemathesis over the REST API's OpenAPI schema (tests/api/test_schemathesis.py): 5xx seen.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

import optuna

from tuner.db import Store
from tuner.kernel_templates.testing.faulty_cpu import FAULTY as FAULTS
from tuner.service import Service

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "kernel_templates" / "testing"
BAD_INPUTS = [
    ["run", "--kernel", "nope"], ["run", "--arch", "sm_12"], ["run", "--arch", "cpu", "--shape", "X=1"],
    ["run", "--arch", "cpu", "--shape", "B"], ["run", "--arch", "cpu", "--shape", "B=abc"],
    ["run", "--arch", "cpu", "--shape", "S=0"], ["run", "--arch", "cpu", "--trials", "0"],
    ["run", "--arch", "cpu", "--sampler", "magic"], ["run", "--arch", "cpu", "--template", "/no/such.py"],
    ["best", "--arch", "cpu", "--kernel", "nope"], ["show", "no-such-study"],
    ["run", "--arch", "cpu", "--db", "postgresql+psycopg://tuner:secret@127.0.0.1:1/x"],
    ["serve", "--port", "70000"],
]


def tune(db: str, template: str, study: str, *extra: str) -> None:
    subprocess.run([sys.executable, "-m", "tuner", "run", "--arch", "cpu", "--template", template,
                    "--shape", "n=1048576", "--db", db, "--study", study, "--sampler", "random",
                    "--seed", "11", "--trial-timeout", "8", "--no-progress", *extra],
                   check=True, capture_output=True, text=True, timeout=900)


def study_rows(db: str, study: str) -> list:
    with Store.open(db, create=False) as store:
        return Service(store).trials(study, limit=10_000).items


def fault_section(db: str) -> dict:
    tune(db, str(TEMPLATES / "faulty_cpu.py"), "faults", "--trials", "40")
    tune(db, str(TEMPLATES / "healthy_cpu.py"), "clean", "--trials", "24", "--remeasure")
    rows, clean = study_rows(db, "faults"), study_rows(db, "clean")
    proposed = optuna.load_study(study_name="faults", storage=db).trials
    injected = [r for r in rows if r.config["variant"] in FAULTS]
    survived = [r for r in injected if r.status == FAULTS[r.config["variant"]]]
    ratios = {}
    for variant in sorted({r.config["variant"] for r in clean}):
        with_faults = [r.median_s for r in rows if r.config["variant"] == variant and r.median_s]
        without = [r.median_s for r in clean if r.config["variant"] == variant and r.median_s]
        if with_faults and without:
            ratios[variant] = median(with_faults) / median(without)
    return {"trials_proposed": len(proposed), "trials_stored": len(rows),
            "trials_lost": len({t.number for t in proposed} - {r.number for r in rows}),
            "faults_injected": len(injected), "faults_survived_and_labelled": len(survived),
            "healthy_median_ratio_faulty_over_clean": ratios}


def bad_input_section() -> dict:
    clean_exits = 0
    with tempfile.TemporaryDirectory() as tmp:
        for args in BAD_INPUTS:
            db = [] if "--db" in args else ["--db", f"sqlite:///{tmp}/bad.db"]
            done = subprocess.run([sys.executable, "-m", "tuner", *args, *db], capture_output=True,
                                  text=True, timeout=120)
            lines = done.stderr.strip().splitlines()
            clean_exits += done.returncode == 2 and lines[-1].startswith("tuner: error:")
        written = Path(tmp, "bad.db").exists()
    return {"bad_inputs_tried": len(BAD_INPUTS), "bad_inputs_clean_exit_2": clean_exits,
            "bad_inputs_wrote_a_database": written}


def server_error_section() -> dict:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "api" / "test_schemathesis.py")],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    return {"schemathesis_passed": done.returncode == 0,
            "schemathesis_summary": done.stdout.strip().splitlines()[-1] if done.stdout else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    out = Path(parser.parse_args().out)
    with tempfile.TemporaryDirectory() as tmp:
        faults = fault_section(f"sqlite:///{tmp}/reliability.db")
    table = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "host": platform.node(), "cpu_count": os.cpu_count(),
             **faults, **bad_input_section(), **server_error_section()}
    (out / "reliability.json").write_text(json.dumps(table, indent=2) + "\n")
    lines = ["| measure | value | goal |", "| --- | --- | --- |"]
    goals = {"trials_lost": "0", "faults_survived_and_labelled": "= faults injected",
             "bad_inputs_clean_exit_2": "= bad inputs tried", "schemathesis_passed": "True (no 5xx)"}
    for key, value in table.items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in value.items()) if isinstance(value, dict) else value
        lines.append(f"| {key} | {shown} | {goals.get(key, '')} |")
    (out / "reliability.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    ok = (faults["trials_lost"] == 0 and faults["faults_survived_and_labelled"] == faults["faults_injected"]
          and table["bad_inputs_clean_exit_2"] == len(BAD_INPUTS) and table["schemathesis_passed"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
