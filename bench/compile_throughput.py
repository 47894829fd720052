"""Compile throughput: kernels compiled per minute with 1, 4 and 16 Ray compile workers.

Compilation is the stage of an evaluation that scales with CPUs (measurement scales with
devices), so this is the rate at which a study can feed its devices. Each (compiler, worker
count) gets a fresh local Ray (``ray.init(num_cpus=N)``, one CPU per compile task as `tuner run`
asks) and an empty compile cache, and compiles the same distinct, valid configs of the attention
template through the backend's real compile path: for CUDA once with NVRTC and once with nvcc
(``TUNER_CUDA_COMPILER``), for the CPU with the C compiler.

    python bench/compile_throughput.py --backend cuda          # on the GPU machine
    python bench/compile_throughput.py --backend cpu           # anywhere
    bench/compile_throughput.sh                                # the same on the GPU machine, into $OUT
Results go to bench/results/compile_throughput_<backend>[_<label>].{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray

from tuner.kernel_templates import KernelSpec, Target, find_spec
from tuner.workers import get_backend
from tuner.workers.cuda_compile import COMPILER_ENV
from tuner.workers.executor import compile_job
from tuner.workers.measurement import Artifact, Job, SpecRef

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULTS = {"cpu": ("cpu", "B=1,H=2,S=128,D=64"), "cuda": ("sm_90a", "B=16,H=96,S=512,D=64")}


@ray.remote(num_cpus=1)
def compile_remote(job: Job) -> Artifact:
    return compile_job(job)


@ray.remote(num_cpus=1)
def warm_up(backend: str) -> str:
    """Loads the backend and its compiler in a worker process, so start-up cost stays out of the
    timing; returns the compiler, as the environment fingerprint names it."""
    return get_backend(backend).compiler_version()


def jobs(spec: KernelSpec, target: Target, shape: str, count: int, seed: int) -> list[Job]:
    """``count`` distinct configs the template accepts for this problem and device."""
    problem = spec.parse_problem(dict(item.split("=") for item in shape.split(",")))
    device = get_backend(target.backend).device(target)
    grid = list(itertools.product(*(p.choices for p in spec.params)))
    random.Random(seed).shuffle(grid)
    chosen: dict[str, Job] = {}
    for values in grid:
        config = dict(zip((p.name for p in spec.params), values, strict=True))
        if spec.check(config, problem, device) is None:
            source = spec.render(config, problem)
            chosen.setdefault(source.digest(), Job(len(chosen), SpecRef(spec.name, spec.backend, family=spec.family),
                                                   config, problem, target, source, seed))
        if len(chosen) == count:
            break
    return list(chosen.values())


def run_with(workers: int, backend: str, compiler: str, batch: list[Job]) -> dict[str, Any]:
    """Compiles ``batch`` with ``compiler`` on a fresh local Ray of ``workers`` CPUs and an empty cache."""
    with tempfile.TemporaryDirectory(prefix="tuner-bench-cache-") as cache:
        env = {"TUNER_CACHE_DIR": cache} | ({COMPILER_ENV: compiler} if backend == "cuda" else {})
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
        try:
            versions = set(ray.get([warm_up.remote(backend) for _ in range(workers)]))
            start = time.perf_counter()
            artifacts = ray.get([compile_remote.remote(job) for job in batch])
            wall = time.perf_counter() - start
        finally:
            ray.shutdown()
    ok = [a for a in artifacts if a.error is None]
    assert not any(a.cached for a in artifacts), "a fresh cache answered a compile"
    assert len(versions) == 1, f"the workers disagree on the compiler: {versions}"
    return {"compiler": versions.pop(), "workers": workers, "kernels": len(batch),
            "compile_errors": len(batch) - len(ok),
            "wall_s": round(wall, 2), "per_minute": round(60 * len(batch) / wall, 1),
            "median_compile_s": round(statistics.median(a.compile_time_s for a in artifacts), 3)}


def machine(backend: str) -> dict[str, Any]:
    """The backend's own fingerprint (compiler, device), plus what bounds compiling: CPU cores."""
    return {**get_backend(backend).environment(), "cpu_cores": os.cpu_count(), "ray": ray.__version__}


def markdown(report: dict[str, Any]) -> str:
    rows = "\n".join(f"| {r['compiler']} | {r['workers']} | {r['kernels']} | {r['wall_s']} | {r['per_minute']} | "
                     f"{r['median_compile_s']} | {r['compile_errors']} |" for r in report["runs"])
    return (f"# Compile throughput: {report['backend']} ({report['arch']}, {report['shape']})\n\n"
            f"{report['note']}\n\nMachine: `{json.dumps(report['machine'])}`, {report['date']}\n\n"
            "| compiler | compile workers | kernels | wall (s) | kernels/min | median compile (s) | errors |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n" + rows + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(DEFAULTS), default="cuda")
    parser.add_argument("--arch", help="default: sm_90a for cuda, cpu for cpu")
    parser.add_argument("--shape", help="problem, NAME=VALUE,...")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--kernels", type=int, default=64, help="distinct configs per worker count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compilers", nargs="+", choices=("nvrtc", "nvcc"), default=["nvrtc", "nvcc"],
                        help="CUDA compilers to compare (the CPU backend has one)")
    parser.add_argument("--note", default="", help="a line for the report (e.g. what the machine is)")
    parser.add_argument("--label", help="suffix of the result files, e.g. the machine (default: none)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the result files (default %(default)s)")
    args = parser.parse_args(argv)
    arch, shape = args.arch or DEFAULTS[args.backend][0], args.shape or DEFAULTS[args.backend][1]
    spec = find_spec("attention", arch, "mma_sync")
    batch = jobs(spec, Target.documented(arch), shape, args.kernels, args.seed)
    compilers = args.compilers if args.backend == "cuda" else ["cc"]
    runs = [run_with(n, args.backend, c, batch) for c in compilers for n in args.workers]
    report = {"backend": args.backend, "arch": arch, "shape": shape, "note": args.note,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(args.backend), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "_".join(["compile_throughput", args.backend] + ([args.label] if args.label else []))
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
