"""Sweeps every admitted config of the CUDA attention template on a few problems, next to PyTorch SDPA.

Run by bench/gpu_check.sh on the GPU machine. Prints the fastest configs per problem with their
error, and writes every measurement to ``<out>/gpu_sweep.csv``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tuner.kernel_templates import Target, find_spec
from tuner.workers import Job, SpecRef, Status, TimingPolicy, get_backend
from tuner.workers.cuda_measure import time_launches

ARCH = "sm_90a"
TARGET = Target.documented(ARCH)
SPEC = find_spec("attention", ARCH, "mma_sync")
BACKEND = get_backend("cuda")
PROBLEMS = [{}, {"causal": True}, {"D": 128, "H": 48}, {"dtype": "bf16"}]


def admitted(problem: dict) -> list[dict]:
    names = [p.name for p in SPEC.params]
    every = [dict(zip(names, v, strict=True)) for v in itertools.product(*(p.choices for p in SPEC.params))]
    device = BACKEND.device(TARGET)
    return [c for c in every if SPEC.check(c, problem, device) is None]


def sdpa_seconds(problem: dict) -> float:
    """Median seconds of PyTorch's flash SDPA on the same problem, timed the worker's way."""
    inputs = SPEC.make_inputs(problem, np.random.default_rng(0))
    out = torch.empty(1, device="cuda")  # poisoned by the timer (last run); SDPA allocates its own
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
        return statistics.median(time_launches(
            lambda: F.scaled_dot_product_attention(*inputs.values(), is_causal=problem["causal"]),
            out, TimingPolicy()))


def sweep(problem: dict, writer: csv.DictWriter) -> None:
    configs = admitted(problem)
    sources = [SPEC.render(c, problem) for c in configs]
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        artifacts = list(pool.map(lambda s: BACKEND.compile(s, TARGET), sources))
    rows = []
    for trial, (config, source, artifact) in enumerate(zip(configs, sources, artifacts, strict=True)):
        job = Job(trial, SpecRef("attention", "cuda"), config, problem, TARGET, source, seed=trial)
        result = BACKEND.measure(job, artifact, SPEC, TimingPolicy())
        row = {**problem, **config, "status": result.status.value, "reason": result.reason,
               "median_us": result.timing and result.timing.median_s * 1e6,
               "iqr_us": result.timing and result.timing.iqr_s * 1e6, "rel_l2": result.rel_l2,
               "registers": artifact.resources.get("registers"), "clock_mhz": result.timing and result.timing.clock_mhz}
        writer.writerow(row)
        rows.append((result, config))
    report(problem, rows)


def report(problem: dict, rows: list) -> None:
    flops = SPEC.flops(problem)
    sdpa = sdpa_seconds(problem)
    bad = [(r.status.value, c, r.reason) for r, c in rows if r.status is not Status.OK]
    good = sorted((r.timing.median_s, r.rel_l2, c) for r, c in rows if r.status is Status.OK)
    print(f"\n== {problem}: {len(good)} ok, {len(bad)} failed; SDPA flash {sdpa * 1e6:.1f} us "
          f"= {flops / sdpa / 1e12:.0f} TFLOP/s")
    for status, config, reason in bad[:5]:
        print(f"   FAILED {status} {config}: {reason}")
    for seconds, rel, config in good[:6]:
        print(f"   {seconds * 1e6:8.1f} us {flops / seconds / 1e12:6.0f} TFLOP/s rel_l2 {rel:.2e}  {config}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/results")
    out = Path(parser.parse_args().out)
    fields = ["B", "H", "S", "D", "causal", "dtype", *(p.name for p in SPEC.params), "status", "reason",
              "median_us", "iqr_us", "rel_l2", "registers", "clock_mhz"]
    with open(out / "gpu_sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for problem in PROBLEMS:
            sweep(SPEC.validate_problem(problem), writer)


if __name__ == "__main__":
    main()
