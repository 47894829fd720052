"""What the runtime layer of tuner.runtime costs per call, measured on the CPU backend (no GPU).

The runtime's hot path (the call's checks, the plan's key and lookup, the output, the launch
seam) is the same Python on both backends; only the launcher under it differs (ctypes on the CPU,
``cuLaunchKernelEx`` on a GPU). So on the CPU, with a tiny attention problem (the kernel itself
takes microseconds), each variant below runs the same C kernel of the config a real ``tuner run``
stored, and the difference between a variant and ``launcher`` is what that variant adds on the
host, the CPU-side share of the GPU overhead in bench/results/runtime_overhead.md:

  launcher        the runtime's own CPU launcher (``tuner.runtime.launch.CpuLauncher``) on fixed
                  buffers: the floor (the ctypes call and the kernel)
  launcher+alloc  the same with a fresh output tensor each call
  plan out=       the runtime's plan of the shape on the inputs and a fixed output: its per-call
                  checks and the launch (no key, no lookup, no allocation)
  runtime         ``tuner.runtime.attention(q, k, v, causal)``, eager
  runtime out=    the same writing into a caller's tensor (``out=``): no allocation
  op / op out=    ``torch.ops.tuner.attention`` / ``torch.ops.tuner.attention_out``: through the
                  dispatcher, as compiled graphs call them
  sdpa            ``F.scaled_dot_product_attention`` on the same inputs (PyTorch's CPU kernel)

Each is the thread CPU time per call of bursts of BURST calls (the variants take turns burst by
burst; CPU time leaves out waiting for a core on a shared machine), median and lowest of BURSTS
bursts, under ``torch.no_grad()``; single-threaded torch (``torch.set_num_threads(1)``).

    python3 bench/runtime_overhead_cpu.py [--out bench/results] [--name runtime_overhead_cpu]
Writes OUT/NAME.{json,md}; tunes into a temporary database first (``tuner run``, CPU, 4 trials).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import tuner.runtime as rt
from tuner.kernel_templates import kernel_spec
from tuner.kernel_templates.families import member
from tuner.runtime.devices import target_of
from tuner.runtime.launch import load

PROBLEM = {"B": 1, "H": 1, "S": 16, "D": 16, "causal": True}
BURST, BURSTS = 2000, 25
VARIANTS = ("launcher", "launcher+alloc", "plan out=", "runtime", "runtime out=", "op", "op out=", "sdpa")


def tune(db: str) -> None:
    shape = ",".join(f"{k}={str(v).lower()}" for k, v in PROBLEM.items())
    subprocess.run([sys.executable, "-m", "tuner", "run", "--kernel", "attention", "--arch", "cpu", "--shape",
                    shape, "--trials", "4", "--seed", "1", "--executor", "local", "--no-warm-start",
                    "--no-progress", "--db", db], check=True, stdout=subprocess.DEVNULL)


def per_call_us(variants: dict[str, Callable[[], Any]]) -> dict[str, dict[str, float]]:
    """Each variant's thread CPU µs per call (median and lowest over the bursts). The variants take
    turns burst by burst, and CPU time (not wall time) leaves out the time this thread waits for a
    core on a shared machine."""
    for call in variants.values():
        for _ in range(200):
            call()
    means: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(BURSTS):
        for name, call in variants.items():
            start = time.thread_time()
            for _ in range(BURST):
                call()
            means[name].append((time.thread_time() - start) / BURST * 1e6)
    return {name: {"median": statistics.median(m), "min": min(m)} for name, m in means.items()}


def calls(db: str) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """Every variant's call on one set of inputs, and what the runtime chose."""
    rt.configure(db=db)
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(PROBLEM["B"], PROBLEM["H"], PROBLEM["S"], PROBLEM["D"], generator=generator)
               for _ in range(3))
    causal = PROBLEM["causal"]
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    first = rt.attention(q, k, v, causal)
    (decision,) = rt.decisions()
    (plan,) = rt.current().plans.values()
    if decision.choice is None:
        raise SystemExit(f"the runtime found no config: {decision.reason}")
    family, config = member(kernel_spec("attention", "cpu"), decision.choice.config)
    source = family.render(config, decision.problem)
    binary = rt.current().answers.binary(family, source, target_of(q.device))  # the .so the runtime loaded
    launcher = load("cpu", binary, source, ("q", "k", "v", "out"), 0)
    out = torch.empty_like(q)
    launcher((q, k, v, out), 0)
    error = float((first - reference).norm() / reference.norm())
    chosen = {"problem": decision.problem, "config": decision.choice.config, "rel_l2_vs_sdpa": error,
              "same_as_launcher": bool(torch.equal(first, out))}
    return {
        "launcher": lambda: launcher((q, k, v, out), 0),
        "launcher+alloc": lambda: launcher((q, k, v, torch.empty_like(q)), 0),
        "plan out=": lambda: plan((q, k, v), out),
        "runtime": lambda: rt.attention(q, k, v, causal),
        "runtime out=": lambda: rt.attention(q, k, v, causal, out=out),
        "op": lambda: torch.ops.tuner.attention(q, k, v, causal, None),
        "op out=": lambda: torch.ops.tuner.attention_out(q, k, v, out, causal, None),
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
    }, chosen


def markdown(document: dict[str, Any]) -> str:
    t = document["us_per_call"]
    floor = t["launcher"]
    lines = [f"# tuner.runtime's own per-call cost on the CPU backend ({document['cpu']})", "",
             f"{document['date']}, commit {document['commit']}; torch {document['torch']} on 1 thread; "
             f"problem {document['chosen']['problem']}, config {document['chosen']['config']} (stored by a "
             f"4-trial `tuner run`); thread CPU time per call over {BURSTS} bursts of {BURST} calls, the "
             "variants taking turns. Script: bench/runtime_overhead_cpu.py.", "",
             "| variant | µs per call (median) | − launcher | lowest burst | − launcher |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {t[name]['median']:.2f} | {t[name]['median'] - floor['median']:+.2f} | "
              f"{t[name]['min']:.2f} | {t[name]['min'] - floor['min']:+.2f} |" for name in VARIANTS]
    lines += ["", "launcher: the same C kernel through the runtime's CPU launcher on fixed buffers (the "
              "kernel and the ctypes call). The − launcher column is the runtime layer's host time: the "
              "same Python runs before a GPU launch (bench/runtime_overhead.py measures that one on the H200)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--name", default="runtime_overhead_cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        db = f"sqlite:///{scratch}/tuner.db"
        tune(db)
        variants, chosen = calls(db)
        with torch.no_grad():
            timings = per_call_us({name: variants[name] for name in VARIANTS})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "tuner"], capture_output=True, text=True).stdout.strip()
    document = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "commit": commit + (" + uncommitted changes under tuner/" if dirty else ""),
                "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                "burst": BURST, "bursts": BURSTS, "chosen": chosen, "us_per_call": timings}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out / f"{args.name}.md").write_text(markdown(document))
    print(markdown(document))


if __name__ == "__main__":
    main()
