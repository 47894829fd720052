"""The GPU pipeline: evaluations per minute and the GPU's share of the study loop, ours against
Kernel Tuner driving the same CUDA source at the same budget (bench/search_gpu_pipeline.sh runs it).

    python bench/search_gpu_pipeline.py --out DIR [--budget 40] [--shape B=16,H=96,S=512,D=64]

Ours: ``tuner run`` of the attention template's mma_sync family (the default sampler, a cold start, a fresh
database), timed from the moment the command starts; its summary gives the loop's wall time and
the time in timed kernel runs, the database the moment of the first stored measurement. Kernel
Tuner: ``tune_kernel`` with its CuPy backend on the same rendered source (a code generator over
our ``render``), the same constraints (our ``check`` as its restriction), launch geometry and
shared memory, and the output verified against the same reference, ``--kt-strategy`` at
``max_fevals = --budget`` (or ``--kt-time-limit`` seconds, whichever ends first: its rate is
then what it reached in that time); its own totals give the benchmark time. Then our loop once more under
bench/pipeline_split.py (the same run, timed phase by phase: proposal, storage, the device's busy
and idle time) into ``DIR/pipeline_split.{json,md}``. ``--dry-run`` builds both sides without a
GPU (what CI and a CPU can check) and prints what would run.

The acceptance's device call (one H200, 40 trials, both tools and the split):

    PARTS=search LIMIT_search=540 bash bench/device_round.sh   (carry .devwheels; timeout_s 600)

which leaves $OUT/round.tar.gz holding search/search_gpu_pipeline_40/{ours,search_gpu_pipeline,
pipeline_split}.json and the logs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner.kernel_templates import Device, find_spec  # noqa: E402
from tuner.kernel_templates.attention_cuda import shared_bytes  # noqa: E402

ARCH = "sm_90a"
FAMILY = "mma_sync"  # the family both tools tune: Kernel Tuner cannot build the wgmma family's TMA maps
KT_SHARED_LIMIT = 48 * 1024  # bytes of dynamic shared memory a launch gets without opting in
H100_LIMITS = {"max_shared_bytes": 232448, "max_shared_bytes_per_sm": 233472}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--shape", default="B=16,H=96,S=512,D=64,causal=false,dtype=fp16")
    parser.add_argument("--kt-strategy", default="genetic_algorithm")
    parser.add_argument("--kt-time-limit", type=float, default=200,
                        help="seconds after which Kernel Tuner stops short of the budget (its rate is then "
                             "what it measured in that time)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true")
    return parser.parse_args(argv)


def problem_of(shape: str) -> dict:
    spec = find_spec("attention", ARCH, FAMILY)
    return spec.parse_problem(dict(part.split("=", 1) for part in shape.split(",")))


def run_ours(args: argparse.Namespace) -> dict:
    db = args.out / "ours.db"
    command = [sys.executable, "-P", "-m", "tuner", "run", "--arch", ARCH, "--family", FAMILY,
               "--shape", args.shape, "--trials", str(args.budget), "--seed", str(args.seed), "--no-warm-start",
               "--no-progress", "--db", f"sqlite:///{db}"]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True)
    total_s = time.time() - started
    (args.out / "ours.log").write_text(done.stdout + done.stderr)
    summary = re.search(r"(\d+) measured.*wall ([\d.]+) s, ([\d.]+)% of it in timed kernel runs",
                        done.stdout.replace("\n", " "))
    if done.returncode != 0 or summary is None:
        raise SystemExit(f"tuner run failed ({done.returncode}): see {args.out / 'ours.log'}")
    measured, loop_s, share = int(summary[1]), float(summary[2]), float(summary[3]) / 100
    return {"tool": "tuner", "strategy": "default", "evaluations": measured, "loop_s": loop_s,
            "command_s": total_s, "evaluations_per_minute": 60 * measured / loop_s, "gpu_share": share,
            "first_measurement_s": first_stored(db) - started}


def first_stored(db: Path) -> float:
    import sqlite3

    with sqlite3.connect(db) as connection:
        (moment,) = connection.execute("select min(created_at) from tuner_trials where status != 'invalid'").fetchone()
    from datetime import datetime, timezone

    return datetime.fromisoformat(moment).replace(tzinfo=timezone.utc).timestamp()


def kt_arguments(problem: dict) -> dict:
    """What Kernel Tuner needs to drive our attention source: everything derived from the template."""
    spec = find_spec("attention", ARCH, FAMILY)
    device = Device(ARCH, limits=H100_LIMITS)
    names = [p.name for p in spec.params]

    def config(params: dict) -> dict:
        return {n: params[n] for n in names}

    tune_params = {p.name: list(p.choices) for p in spec.params}
    tune_params["block_size_x"] = sorted({32 * w for w in tune_params["warps"]})  # Kernel Tuner's thread count

    def restriction(params: dict) -> bool:
        # Kernel Tuner's CuPy backend launches with the dynamic shared memory a kernel gets without
        # opting in (48 KB; it never sets the function's max-dynamic-shared-memory attribute), and a
        # launch past it raises CUDA_ERROR_INVALID_VALUE, which ends its whole run: its space stops there.
        return (params["block_size_x"] == 32 * params["warps"] and spec.check(config(params), problem, device) is None
                and shared_bytes(config(params), problem) <= KT_SHARED_LIMIT)

    return dict(kernel_name=spec.render(config({n: tune_params[n][0] for n in names}), problem).entry,
                kernel_source=lambda params: spec.render(config(params), problem).code,
                problem_size=lambda params: (math.ceil(problem["S"] / params["block_m"]), problem["B"] * problem["H"]),
                tune_params=tune_params, restrictions=restriction, grid_div_x=[], grid_div_y=[],
                smem_args={"size": lambda params: shared_bytes(config(params), problem)},
                # CuPy's NVRTC targets the device's own arch (sm_90: this source has no sm_90a-only
                # instruction) and refuses nvcc's -O3 (workers/nvrtc.py drops it for ours too)
                compiler_options=[], lang="cupy")


def run_kernel_tuner(args: argparse.Namespace, problem: dict) -> dict:
    import kernel_tuner
    import numpy as np
    import torch

    spec = find_spec("attention", ARCH, FAMILY)
    inputs = spec.make_inputs(problem, np.random.default_rng(args.seed))
    reference = spec.reference(inputs, problem).to(inputs["q"].dtype).cpu().numpy()
    host = [inputs[n].cpu().numpy() for n in ("q", "k", "v")]
    out = np.zeros_like(reference)
    source = spec.render({p.name: p.choices[0] for p in spec.params}, problem)
    scalars = [getattr(np, kind)(value) for kind, value in source.scalars]  # S, causal, scale, kv_group
    options = kt_arguments(problem)
    started = time.time()
    limits = {"max_fevals": args.budget, "time_limit": args.kt_time_limit}
    results, env = kernel_tuner.tune_kernel(arguments=[*host, out, *scalars], answer=[None, None, None, reference,
                                            *[None] * len(scalars)], atol=2e-2, strategy=args.kt_strategy,
                                            strategy_options=limits, quiet=False, **options)
    loop_s = time.time() - started
    torch.cuda.synchronize()
    unique = {json.dumps({k: r[k] for k in options["tune_params"]}, sort_keys=True) for r in results}
    benchmark_s = float(env.get("total_benchmark_time", 0)) / 1e3
    failed = sum(isinstance(r.get("time"), str) or not np.isfinite(r.get("time", np.inf)) for r in results)
    return {"tool": "kernel_tuner", "strategy": args.kt_strategy, "evaluations": len(unique), "loop_s": loop_s,
            "evaluations_per_minute": 60 * len(unique) / loop_s, "gpu_share": benchmark_s / loop_s,
            "failed": failed, "stopped_by_time_limit": len(unique) < args.budget,
            "kernel_tuner_totals": {k: v for k, v in env.items() if k.startswith("total")}}


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    problem = problem_of(args.shape)
    options = kt_arguments(problem)
    if args.dry_run:
        first = {n: v[0] for n, v in options["tune_params"].items()}
        first["block_size_x"] = 32 * first["warps"]
        print(json.dumps({"kernel": options["kernel_name"], "problem": problem,
                          "grid_of_first": options["problem_size"](first),
                          "valid_for_kernel_tuner": count_valid(options),
                          "source_bytes": len(options["kernel_source"](first))}, default=str))
        return
    ours = run_ours(args)
    (args.out / "ours.json").write_text(json.dumps(ours, indent=1) + "\n")  # kept if Kernel Tuner's side fails
    theirs = run_kernel_tuner(args, problem)
    rows = [ours, theirs]
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "shape": problem,
              "budget": args.budget, "rows": rows,
              "evaluations_per_minute_ratio": ours["evaluations_per_minute"] / theirs["evaluations_per_minute"]}
    (args.out / "search_gpu_pipeline.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps(result, indent=1, default=str))
    run_split(args)


def run_split(args: argparse.Namespace) -> None:
    """Our loop phase by phase (bench/pipeline_split.py), on the same shape, budget and seed (over
    every family of the template: pipeline_split.py has no --family)."""
    split = Path(__file__).with_name("pipeline_split.py")
    done = subprocess.run([sys.executable, "-P", str(split), "--arch", ARCH, "--executor", "ray", "--shape",
                           args.shape, "--trials", str(args.budget), "--seed", str(args.seed), "--label", "gpu",
                           "--out", str(args.out / "pipeline_split.json")], capture_output=True, text=True)
    (args.out / "pipeline_split.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"bench/pipeline_split.py failed ({done.returncode}): see {args.out / 'pipeline_split.log'}")


def count_valid(options: dict) -> int:
    import itertools

    names = list(options["tune_params"])
    return sum(options["restrictions"](dict(zip(names, values, strict=True)))
               for values in itertools.product(*options["tune_params"].values()))


if __name__ == "__main__":
    main()
