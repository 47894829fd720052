"""First look at the Hopper (wgmma) attention family on the GPU: correctness with a hang watchdog,
then a few configs per headline shape timed beside SDPA's cuDNN and flash backends.

    python3 -P bench/attention_hopper_probe.py check [--quick] [--new] --out DIR   (resumable: skips rows in DIR)
    python3 -P bench/attention_hopper_probe.py one '{config}' '{problem}'   (one launch, for compute-sanitizer)
    python3 -P bench/attention_hopper_probe.py time [--new] --out DIR
    python3 -P bench/attention_hopper_probe.py profile '{config}'|cudnn '{problem}'   (for ncu: see below)

``--new``: check only the TMA epilogue and 2-block cluster configs; time every probed tile with
each epilogue and cluster size (attention_hopper_next_times.json and a table per headline row,
attention_hopper_next.md), not only with the direct epilogue and no cluster.

``--fp8``: the e4m3 configs (precision=e4m3, problems with fp8=true): check them on the GPU
tests' FP8 problems (attention_hopper_fp8_check.jsonl); time FP8_TIMED (each tile with each
POLY_SHARES share of exp2 on the FMA pipe) on the headline shapes and
S=8192, fp16 in and out, causal and not, beside cuDNN's fp16 and the best exact tile of TIMED
(attention_hopper_fp8_times.json, attention_hopper_fp8.md: µs per head, TFLOP/s, error).

``profile`` launches our kernel with that config (or SDPA's cuDNN backend) a few times, then once
between ``cudaProfilerStart`` and ``Stop``: ``ncu --profile-from-start off`` captures that launch
alone (bench/attention_hopper_profile.sh).

``check`` writes one JSON line per (problem, config) to DIR/attention_hopper_check.jsonl: relative L2
and max abs error, non-finite elements, the first wrong (b, h, row) and the error by row tile. A
launch that does not finish in WATCHDOG_S is logged as a hang and the process exits 3 (the shell
script starts it again; the hung row is skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.gpu.test_attention_hopper import FP8_PROBLEMS, PROBLEMS, configs_for, problem_of  # noqa: E402
from tuner.kernel_templates import Target, find_spec  # noqa: E402
from tuner.workers import TimingPolicy, get_backend  # noqa: E402
from tuner.workers.cuda_launch import launcher  # noqa: E402
from tuner.workers.cuda_measure import error_metrics, time_launches  # noqa: E402

TARGET = Target.documented("sm_90a")
SPEC = find_spec("attention", "sm_90a", "wgmma")
BACKEND = get_backend("cuda")
WATCHDOG_S = 10.0
POLICY = TimingPolicy(warmup_s=0.01, budget_s=0.08, min_repeats=30)
HEADLINE = ((16, 96, 512, 64), (16, 96, 512, 128), (2, 32, 4096, 128), (2, 96, 4096, 64))
# (block_m, block_n, stages, overlap, pingpong) timed per head dim: FA3's tiles and their neighbours,
# and three-stage rings (cuDNN's kernel holds three K/V stages at D=128: results/attention_hopper_profile.txt)
TIMED = {
    64: ((192, 96, 2, "intra", True), (192, 128, 2, "serial", True), (192, 144, 2, "serial", True),
         (128, 128, 2, "intra", True), (128, 128, 2, "intra", False), (128, 176, 2, "intra", True),
         (128, 128, 3, "serial", True), (64, 128, 2, "intra", False), (192, 128, 3, "serial", True),
         (128, 176, 3, "intra", True)),
    128: ((128, 128, 2, "intra", True), (128, 128, 2, "intra", False), (128, 112, 2, "intra", True),
          (128, 176, 2, "serial", True), (128, 96, 3, "intra", True), (128, 128, 2, "serial", True),
          (192, 80, 2, "serial", True), (128, 128, 3, "serial", True), (128, 128, 3, "intra", True)),
}
# e4m3 tiles timed per head dim (block_n 64 or 128: a transposed V row is one swizzled chunk); FA3's
# FP8 kernels take 128 x 128 to 192 x 128 with 2 stages
FP8_TIMED = {
    64: ((192, 128, 2, "serial", True), (128, 128, 2, "intra", True), (128, 128, 3, "intra", True),
         (192, 64, 2, "intra", True), (128, 128, 2, "serial", True), (64, 128, 2, "intra", False)),
    128: ((128, 128, 2, "intra", True), (128, 128, 3, "intra", True), (128, 128, 2, "serial", True),
          (192, 64, 2, "intra", True), (128, 64, 3, "intra", True), (64, 128, 2, "intra", False)),
}
FP8_ROWS = HEADLINE + ((2, 32, 8192, 128),)
NAMES = ("block_m", "block_n", "stages", "overlap", "pingpong")
PLAIN = {"epilogue": "direct", "cluster": 1}
# (epilogue, cluster) of `time --new`
KNOBS = (PLAIN, {"epilogue": "tma", "cluster": 1}, {"epilogue": "direct", "cluster": 2},
         {"epilogue": "tma", "cluster": 2})
# check --quick: one tile of each kind on ragged, causal and GQA problems (a check in seconds)
QUICK_CONFIGS = ((128, 128, 2, "intra", True), (192, 144, 2, "serial", True), (64, 192, 2, "intra", False),
                 (128, 64, 3, "serial", False), (192, 96, 2, "intra", True))
QUICK_PROBLEMS = [p for p in PROBLEMS
                  if p["D"] in (64, 128) and p["S"] in (1000, 333) and (p["causal"] or p["S"] == 1000)]


E4M3 = {"precision": "e4m3"}
POLY_SHARES = (0, 25, 50)  # percent of the softmax's exp2 on the FMA pipe, timed for each e4m3 tile


def config_of(values: tuple, knobs: dict[str, Any] = PLAIN) -> dict[str, Any]:
    return dict(zip(NAMES, values, strict=True)) | knobs


def compile_all(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    sources = {s.code_digest(): s for s in itertools.starmap(SPEC.render, pairs)}
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        for artifact in pool.map(lambda s: BACKEND.compile(s, TARGET), sources.values()):
            if artifact.error:
                print("COMPILE ERROR", artifact.error, artifact.log[-2000:], flush=True)


def launch_of(config: dict[str, Any], problem: dict[str, Any], inputs: dict[str, Any], out: torch.Tensor):
    source = SPEC.render(config, problem)
    artifact = BACKEND.compile(source, TARGET)
    if artifact.error:
        raise RuntimeError(f"compile: {artifact.error}")
    return launcher(artifact.path, source, SPEC.kernel_inputs(inputs, config), out)


def finish_or_die(label: str, log) -> None:
    """Waits for the launches so far, or logs a hang and exits 3 (a hung kernel holds the GPU)."""
    event = torch.cuda.Event()
    event.record()
    deadline = time.monotonic() + WATCHDOG_S
    while not event.query():
        if time.monotonic() > deadline:
            log.write(json.dumps({"key": label, "hang": True}) + "\n")
            log.flush()
            print("HANG", label, flush=True)
            os._exit(3)
        time.sleep(0.001)


def diagnose(out: torch.Tensor, ref: torch.Tensor, problem: dict[str, Any], block_m: int) -> dict[str, Any]:
    diff = (out.double() - ref.double()).abs()
    diff[~torch.isfinite(out)] = float("inf")
    per_row = diff.amax(dim=-1)  # [B, H, S]
    tol = 0.05 if problem["dtype"] == "fp16" else 0.2
    bad = (per_row > tol).nonzero()
    tiles = per_row.amax(dim=(0, 1))
    by_tile = [float(tiles[i:i + block_m].max()) for i in range(0, problem["S"], block_m)]
    by_head = per_row.amax(dim=(0, 2)).tolist()
    return {"bad_rows": int(bad.shape[0]), "first_bad": bad[0].tolist() if bad.shape[0] else None,
            "max_by_row_tile": [round(x, 4) for x in by_tile][:40], "max_by_head": [round(x, 4) for x in by_head][:16]}


def check(out_dir: Path, quick: bool, new_only: bool, fp8: bool = False) -> None:
    path = out_dir / ("attention_hopper_fp8_check.jsonl" if fp8 else "attention_hopper_check.jsonl")
    done = set()
    if path.exists():
        done = {json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()}
    device = BACKEND.device(TARGET)
    if fp8:
        jobs = [(c, problem_of(v)) for v in FP8_PROBLEMS for c in configs_for(problem_of(v))
                if c["precision"] == "e4m3"]
    elif quick:
        jobs = [(config_of(c), problem_of(v)) for v in QUICK_PROBLEMS for c in QUICK_CONFIGS
                if SPEC.check(config_of(c), problem_of(v), device) is None]
    else:
        jobs = [(c, problem_of(v)) for v in PROBLEMS for c in configs_for(problem_of(v), new_only)]
    compile_all(jobs)
    failures = 0
    with path.open("a") as log:
        for seed, (config, problem) in enumerate(jobs):
            key = json.dumps([config, problem], sort_keys=True)
            if key in done:
                continue
            inputs = SPEC.make_inputs(problem, np.random.default_rng(seed))
            out = torch.full(SPEC.output_spec(problem).shape, float("nan"), dtype=inputs["q"].dtype, device="cuda")
            launch_of(config, problem, inputs, out)()
            finish_or_die(key, log)
            ref = SPEC.reference(inputs, problem)
            rel, worst = error_metrics(out, ref)
            row = {"key": key, "config": config, "problem": problem, "rel_l2": rel, "max_abs": worst,
                   "nonfinite": int((~torch.isfinite(out)).sum()),
                   "ok": rel <= SPEC.max_error(config, problem)}
            if not row["ok"]:
                row |= diagnose(out, ref, problem, config["block_m"])
                failures += 1
            log.write(json.dumps(row) + "\n")
            log.flush()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    bad = [r for r in rows if not r.get("ok")]
    print(f"check: {len(rows)} rows, {len(bad)} failing or hung")
    for r in bad[:25]:
        print("FAIL", json.dumps({k: r.get(k) for k in ("config", "problem", "rel_l2", "nonfinite", "bad_rows",
                                                        "first_bad", "max_by_row_tile", "hang")}))
    worst = max((r for r in rows if r.get("ok")),
                key=lambda r: r["rel_l2"] / SPEC.max_error(r["config"], r["problem"]), default=None)
    if worst:
        print("largest passing error:", worst["rel_l2"], worst["config"], worst["problem"])


def one(config: str, problem: str) -> None:
    config_, problem_ = PLAIN | json.loads(config), problem_of(json.loads(problem))
    inputs = SPEC.make_inputs(problem_, np.random.default_rng(0))
    out = torch.full(SPEC.output_spec(problem_).shape, float("nan"), dtype=inputs["q"].dtype, device="cuda")
    launch_of(config_, problem_, inputs, out)()
    torch.cuda.synchronize()
    print("one:", error_metrics(out, SPEC.reference(inputs, problem_)))


def profile(config: str, problem: str) -> None:
    problem_ = problem_of(json.loads(problem))
    inputs = SPEC.make_inputs(problem_, np.random.default_rng(0))
    if config == "cudnn":
        q, k, v = inputs["q"], inputs["k"], inputs["v"]
        backend = sdpa_kernel(SDPBackend.CUDNN_ATTENTION)
        launch = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=problem_["causal"])  # noqa: E731
    else:
        backend = contextlib.nullcontext()
        out = torch.empty(SPEC.output_spec(problem_).shape, dtype=inputs["q"].dtype, device="cuda")
        launch = launch_of(PLAIN | json.loads(config), problem_, inputs, out)
    with backend:
        for _ in range(3):
            launch()
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        launch()
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


def median_s(launch, out: torch.Tensor) -> float:
    return statistics.median(time_launches(launch, out, POLICY))


def sdpa_seconds(backend: SDPBackend, inputs: dict[str, Any], causal: bool) -> float:
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    with sdpa_kernel(backend):
        return median_s(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                        torch.empty(1, device="cuda"))


def time_rows(out_dir: Path, new: bool, fp8: bool = False) -> None:
    if fp8:  # fp16 in and out; the e4m3 tiles and the exact ones, on the same inputs
        problems = [SPEC.validate_problem(dict(zip("BHSD", shape, strict=True), causal=causal, fp8=True))
                    for shape in FP8_ROWS for causal in (False, True)]
        tiles_of = {d: [(t, PLAIN | E4M3 | {"poly_exp2": share}) for t in FP8_TIMED[d] for share in POLY_SHARES]
                    + [(t, PLAIN) for t in TIMED[d]] for d in FP8_TIMED}
    else:
        problems = [SPEC.validate_problem(dict(zip("BHSD", shape, strict=True), causal=causal, dtype=dtype))
                    for shape in HEADLINE for causal in (False, True) for dtype in ("fp16", "bf16")]
        tiles_of = {d: [(t, knobs) for t in TIMED[d] for knobs in (KNOBS if new else (PLAIN,))] for d in TIMED}
    device = BACKEND.device(TARGET)
    jobs = [(config_of(t, knobs), p) for p in problems for t, knobs in tiles_of[p["D"]]
            if SPEC.check(config_of(t, knobs), p, device) is None]
    compile_all(jobs)
    results = []
    for problem in problems:
        inputs = SPEC.make_inputs(problem, np.random.default_rng(1))
        ref = SPEC.reference(inputs, problem)
        sdpa = {name: sdpa_seconds(backend, inputs, problem["causal"])
                for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION))}
        flops = SPEC.flops(problem)
        for config in (c for c, p in jobs if p is problem):
            out = torch.empty_like(inputs["q"])
            launch = launch_of(config, problem, inputs, out)
            seconds = median_s(launch, out)
            rel = error_metrics(out, ref)[0]
            row = {"problem": problem, "config": config, "us": seconds * 1e6, "tflops": flops / seconds / 1e12,
                   "rel_l2": rel, "cudnn_tflops": flops / sdpa["cudnn"] / 1e12,
                   "flash_tflops": flops / sdpa["flash"] / 1e12, "x_cudnn": sdpa["cudnn"] / seconds,
                   "us_per_head": seconds * 1e6 / problem["H"]}
            results.append(row)
            print(f"{problem['B']},{problem['H']},{problem['S']},{problem['D']} c={int(problem['causal'])} "
                  f"{problem['dtype']} {list(config.values())} {row['tflops']:6.0f} TF  cudnn "
                  f"{row['cudnn_tflops']:4.0f} flash {row['flash_tflops']:4.0f}  x cudnn {row['x_cudnn']:.3f} "
                  f"rel {rel:.1e}", flush=True)
    name = "attention_hopper_fp8" if fp8 else "attention_hopper_next" if new else "attention_hopper_probe"
    (out_dir / f"{name}_times.json").write_text(json.dumps(results, indent=1) + "\n")
    if fp8:
        (out_dir / f"{name}.md").write_text(fp8_table(results))
    elif new:
        (out_dir / f"{name}.md").write_text(best_table(results))


def fp8_table(results: list[dict[str, Any]]) -> str:
    """Per row, the fastest e4m3 tile within its bound and the fastest exact one, beside cuDNN fp16."""
    lines = ["| B,H,S,D | causal | cuDNN fp16 TF | exact: tile, TF | e4m3 (poly_exp2 0): TF | "
             "e4m3: tile, poly_exp2, µs/head, TF, rel L2 | e4m3 x cuDNN |", "|---|---|---|---|---|---|---|"]
    keys = dict.fromkeys(json.dumps(r["problem"], sort_keys=True) for r in results)
    for key in keys:
        rows = [r for r in results if json.dumps(r["problem"], sort_keys=True) == key
                and r["rel_l2"] <= SPEC.max_error(r["config"], r["problem"])]
        if not rows:
            continue
        p = rows[0]["problem"]
        exact, e4m3 = (max((r for r in rows if (r["config"].get("precision") == "e4m3") == fp8), default=None,
                           key=lambda r: r["tflops"]) for fp8 in (False, True))
        mufu = max((r["tflops"] for r in rows if r["config"].get("precision") == "e4m3"
                    and not r["config"].get("poly_exp2")), default=None)
        cells = [f"{[exact['config'][n] for n in NAMES]}, {exact['tflops']:.0f}" if exact else "-",
                 f"{mufu:.0f}" if mufu else "-",
                 f"{[e4m3['config'][n] for n in NAMES]}, {e4m3['config'].get('poly_exp2', 0)}, "
                 f"{e4m3['us_per_head']:.2f}, {e4m3['tflops']:.0f}, {e4m3['rel_l2']:.1e}" if e4m3 else "-",
                 f"{e4m3['x_cudnn']:.3f}" if e4m3 else "-"]
        lines.append(f"| {p['B']},{p['H']},{p['S']},{p['D']} | {'yes' if p['causal'] else 'no'} | "
                     f"{rows[0]['cudnn_tflops']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def best_table(results: list[dict[str, Any]]) -> str:
    """Per headline row, the fastest probed tile with each epilogue and cluster size beside cuDNN
    (of the tiles within the error bound: a wrong tile shows as `-`)."""
    results = [r for r in results if r["rel_l2"] <= SPEC.max_error(r["config"], r["problem"])]
    head = "| B,H,S,D | causal | dtype | cuDNN TF | " + " | ".join(
        f"{k['epilogue']}, cluster {k['cluster']}: tile, TF" for k in KNOBS) + " | best x cuDNN |"
    lines = [head, "|" + "---|" * (5 + len(KNOBS))]
    keys = dict.fromkeys(json.dumps(r["problem"], sort_keys=True) for r in results)
    for key in keys:
        rows = [r for r in results if json.dumps(r["problem"], sort_keys=True) == key]
        p, cells = rows[0]["problem"], []
        for knobs in KNOBS:
            mine = [r for r in rows if r["config"] | knobs == r["config"]]
            top = max(mine, key=lambda r: r["tflops"], default=None)
            cells.append(f"{[top['config'][n] for n in NAMES]}, {top['tflops']:.0f}" if top else "-")
        lines.append(f"| {p['B']},{p['H']},{p['S']},{p['D']} | {'yes' if p['causal'] else 'no'} | {p['dtype']} | "
                     f"{rows[0]['cudnn_tflops']:.0f} | " + " | ".join(cells)
                     + f" | {max(r['x_cudnn'] for r in rows):.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("check", "one", "time", "profile"))
    parser.add_argument("args", nargs="*")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--quick", action="store_true", help="check: a few tiles on a few problems")
    parser.add_argument("--new", action="store_true",
                        help="check: only the TMA epilogue and cluster configs; time: every epilogue and cluster size")
    parser.add_argument("--fp8", action="store_true", help="check / time the e4m3 configs (see above)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "check":
        check(args.out, args.quick, args.new, args.fp8)
    elif args.mode == "one":
        one(*args.args)
    elif args.mode == "profile":
        profile(*args.args)
    else:
        time_rows(args.out, args.new, args.fp8)


if __name__ == "__main__":
    main()
