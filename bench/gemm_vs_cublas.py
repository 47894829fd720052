"""The service's best GEMM config against cuBLAS (torch.matmul), in one run.

Rows (issue 14): squares 2048, 4096, 8192 (B [K, N]); LLM projections M in {4096, 16384} tokens x
(N, K) in {(4096, 4096), (14336, 4096), (4096, 14336)} with layout nt (x @ W.T); odd sizes
3000^3 and (1000, 5000, 3000); each in fp16 and bf16. FP8 rows (issue 16): the same squares and
projections (not the odd sizes: ``torch._scaled_mm`` takes multiples of 16) with e4m3 inputs,
per-tensor scales and bf16 output, in layout nt (FP8 wgmma and cuBLASLt both read B K-major),
against ``torch._scaled_mm`` (cuBLASLt, ``use_fast_accum=True``: the tensor cores' own FP8
accumulation, as the template's) on the same quantized inputs; their error is against the fp32
product before quantization. For each row the fastest stored config
within the dtype's error bound (``Service.best`` on that exact problem), tuned first through
``tuner run`` (the default sampler, ``--trials``) where none is stored; then, in this process,
the tuned kernel and ``torch.matmul`` on the same fresh random inputs, timed the same way
(``cuda_measure.time_launches``: L2 flushed before every run, one event pair
per run) in alternating rounds, median of >= 60 each. Writes ``gemm_vs_cublas.{json,md,png}`` and
the winners' HGMMA/QGMMA lines (``gemm_vs_cublas.sass.txt``).
    bench/gemm_vs_cublas.sh       (check, tune, measure, the 100-trial run: one device call)
    python3 -P bench/gemm_vs_cublas.py --check            (every variant built, every row's shape verified)
    python3 -P bench/gemm_vs_cublas.py --db URL --trials 24
    python3 -P bench/gemm_vs_cublas.py --db URL --profile 3   (row 3's winner launched once, for ncu)
    python3 -P bench/gemm_vs_cublas.py --profile '{"cluster": 1} {"M": 4096}'   (a config of one's own)
    python3 -P bench/gemm_vs_cublas.py --db URL --rows odd --stream-k --retune   (bench/gemm_streamk.sh)

``--stream-k`` (the odd rows, whose tile counts leave a part-empty last wave on 132 SMs): each row's
stored best from before this run's tuning (data-parallel: the database predates the knob), the
best after it, and the fastest of the stream-K candidates (the winner's tile with stream_k, and
STREAM_K_CONFIGS), timed beside cuBLAS in alternating rounds; ``gemm_streamk.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuner import cli
from tuner.db import Store
from tuner.kernel_templates import Target, find_spec
from tuner.service import NotFound, Service
from tuner.workers import Job, SpecRef, Status, TimingPolicy, get_backend
from tuner.workers.cuda_launch import launcher
from tuner.workers.cuda_measure import error_metrics, poison, time_launches
from tuner.workers.sass import count, dump_sass

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # bench.*; appended, so the installed tuner stays first
from bench.attention_vs_sdpa import header  # noqa: E402  (device, driver, versions, date)

ARCH = "sm_90a"
TARGET = Target.documented(ARCH)
SPEC = find_spec("gemm", ARCH)
BACKEND = get_backend("cuda")
POLICY = TimingPolicy(warmup_s=0.02, budget_s=0.2, min_repeats=50)
# measure_row times the tuned kernel and cuBLAS in alternating rounds (>= 60 runs each in all), so
# that neither is timed alone on a card that the other (or the fp32 reference) has just heated.
ROUNDS = 4
ROUND = TimingPolicy(warmup_s=0.005, budget_s=0.05, min_repeats=15)
QUICK = TimingPolicy(warmup_s=0.002, budget_s=0.005, min_repeats=20)
# The published Hopper GEMMs' tile ("fast.cu": 128x256x64, two consumers, cluster 2, persistent).
REFERENCE_CONFIG = {"block_m": 128, "block_n": 256, "block_k": 64, "stages": 4, "consumers": 2, "cluster": 2,
                    "persistent": True, "raster": "m", "epilogue": "direct", "split_k": 1, "schedule": "cooperative",
                    "stream_k": False}
FP8_REFERENCE_CONFIG = REFERENCE_CONFIG | {"block_k": 128, "precision": "e4m3"}  # a stage of 128 bytes of K
# A study with no tuned neighbour of its dtype and layout (nothing to warm-start from) gets this many
# times --trials.
COLD_TRIALS_FACTOR = 3


# Stream-K's candidates on the odd rows beside the stored winner's own tile: the tiles that won them
# data-parallel (128x256 with two consumers, 128x128 with one), and 256x128.
_STREAMED = REFERENCE_CONFIG | {"cluster": 1, "stream_k": True}
STREAM_K_CONFIGS = [_STREAMED | {"epilogue": "tma_half"}, _STREAMED | {"epilogue": "tma", "stages": 3}, _STREAMED,
                    _STREAMED | {"block_n": 128, "consumers": 1, "stages": 6},
                    _STREAMED | {"block_n": 128, "consumers": 1, "stages": 6, "epilogue": "tma"},
                    _STREAMED | {"block_m": 256, "block_n": 128, "stages": 3, "epilogue": "tma"}]


SQUARES = [(s, s, s, "nn") for s in (2048, 4096, 8192)]
PROJECTIONS = [(m, n, k, "nt") for m in (4096, 16384) for n, k in ((4096, 4096), (14336, 4096), (4096, 14336))]
ODD = [(3000, 3000, 3000, "nn"), (1000, 5000, 3000, "nn")]
FP8_OUT = "bf16"


def rows() -> list[dict[str, Any]]:
    """The 16-bit rows (each shape in fp16, then in bf16), then the FP8 rows."""
    sixteen = [SPEC.validate_problem({"M": m, "N": n, "K": k, "layout": layout, "dtype": dtype})
               for dtype in ("fp16", "bf16") for m, n, k, layout in SQUARES + PROJECTIONS + ODD]
    return sixteen + [SPEC.validate_problem({"M": m, "N": n, "K": k, "layout": "nt", "dtype": "e4m3",
                                             "out_dtype": FP8_OUT}) for m, n, k, _ in SQUARES + PROJECTIONS]


def selects(choice: str, problem: dict[str, Any]) -> bool:
    """Whether ``--rows choice`` takes the row: all, the FP8 or 16-bit ones, or the odd sizes (both dtypes)."""
    if choice == "odd":
        return (problem["M"], problem["N"], problem["K"], problem["layout"]) in ODD and problem["dtype"] != "e4m3"
    return choice == "all" or (problem["dtype"] == "e4m3") == (choice == "fp8")


def mma_mnemonic(problem: dict[str, Any]) -> str:
    """The SASS of the row's warpgroup MMAs: QGMMA for FP8, HGMMA for 16-bit inputs."""
    return "QGMMA" if problem["dtype"] == "e4m3" else "HGMMA"


def bound(problem: dict[str, Any]) -> float:
    return SPEC.max_error({}, problem)


def reference_config(problem: dict[str, Any]) -> dict[str, Any]:
    return FP8_REFERENCE_CONFIG if problem["dtype"] == "e4m3" else REFERENCE_CONFIG


def admitted(problem: dict[str, Any]) -> list[dict[str, Any]]:
    names, device = [p.name for p in SPEC.params], BACKEND.device(TARGET)
    every = (dict(zip(names, values, strict=True)) for values in itertools.product(*(p.choices for p in SPEC.params)))
    return [config for config in every if SPEC.check(config, problem, device) is None]


def build_all(problems: list[dict[str, Any]] | None = None) -> list[str]:
    """Compiles every distinct binary check() admits for the rows into the cache (the studies then
    find them built), nvcc processes in parallel; the problems of those that fail, spill or lack
    HGMMA (QGMMA for FP8)."""
    sources = {}
    for problem in rows() if problems is None else problems:
        for config in admitted(problem):
            source = SPEC.render(config, problem)
            sources.setdefault(source.code_digest(), (config, problem, source))

    def build(item: tuple[dict, dict, Any]) -> str | None:
        config, problem, source = item
        artifact = BACKEND.compile(source, TARGET)
        if artifact.error:
            return f"{config} {problem['dtype']} {problem['layout']}: {artifact.error}"
        spilled = artifact.resources.get("spill_store_bytes", 0) or artifact.resources.get("stack_bytes", 0)
        if spilled or not count(dump_sass(artifact.path), mma_mnemonic(problem)):
            return (f"{config} {problem['dtype']} {problem['layout']}: spills or no {mma_mnemonic(problem)} "
                    f"{artifact.resources}")
        return None

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        failures = [f for f in pool.map(build, sources.values()) if f]
    print(f"built {len(sources)} variants: {len(failures)} failed, spilled or lack their MMAs", flush=True)
    return failures


def check() -> int:
    """Every variant built; each row's shape verified with the reference config and two others."""
    failures = build_all()
    for index, problem in enumerate(rows()):
        configs = admitted(problem)
        for config in (reference_config(problem), configs[index % len(configs)], configs[-1 - index % len(configs)]):
            source = SPEC.render(config, problem)
            job = Job(trial_id=index, spec=SpecRef("gemm", "cuda"), config=config, problem=problem, target=TARGET,
                      source=source, seed=index)
            result = BACKEND.measure(job, BACKEND.compile(source, TARGET), SPEC, QUICK)
            line = (f"row {index} {_label(problem)} {_config_text(config)}: {result.status.value} "
                    f"rel {result.rel_l2:.2e} (bound {bound(problem):.0e}) {result.reason or ''}")
            print(line, flush=True)
            if result.status is not Status.OK:
                failures.append(line)
    print(f"check: {len(failures)} failures", flush=True)
    return 1 if failures else 0


_PINGPONG = REFERENCE_CONFIG | {"schedule": "pingpong", "block_m": 64, "epilogue": "tma"}
PROBE_CONFIGS = [
    REFERENCE_CONFIG | {"stages": 3, "epilogue": "tma"},  # the best cooperative tile before ping-pong
    REFERENCE_CONFIG | {"epilogue": "tma_half"},  # its 4th stage
    REFERENCE_CONFIG | {"epilogue": "tma_half", "cluster": 1},
    _PINGPONG,
    _PINGPONG | {"cluster": 1},
    _PINGPONG | {"stages": 5, "epilogue": "direct"},
    _PINGPONG | {"block_m": 128, "block_n": 128, "stages": 5},
    _PINGPONG | {"block_m": 128, "block_n": 128, "stages": 6, "epilogue": "tma_half"},
]


def probe() -> None:
    """A few tiles beside cuBLAS at 4096 and 8192: where the template stands before any tuning."""
    problems = [SPEC.validate_problem({"M": s, "N": s, "K": s, "layout": layout, "dtype": dtype})
                for s, layout, dtype in ((4096, "nn", "bf16"), (4096, "nt", "bf16"), (8192, "nn", "bf16"),
                                         (8192, "nt", "bf16"), (4096, "nn", "fp16"))]
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(lambda pair: BACKEND.compile(SPEC.render(*pair), TARGET),
                      [(c, p) for c in PROBE_CONFIGS for p in problems]))
    for index, problem in enumerate(problems):
        inputs = SPEC.make_inputs(problem, np.random.default_rng(index))
        ref = SPEC.reference(inputs, problem)
        out = output(problem)
        cublas_s = median_s(cublas_launch(problem, inputs, out), out)
        flops = SPEC.flops(problem)
        print(f"{_label(problem)}: cuBLAS {flops / cublas_s / 1e12:.0f} TFLOP/s", flush=True)
        for config in PROBE_CONFIGS:
            launch = tuned_launch(config, problem, inputs, out)
            seconds = median_s(launch, out)
            error = error_metrics(out, ref)[0]
            print(f"   {_config_text(config)}: {flops / seconds / 1e12:.0f} TFLOP/s ({cublas_s / seconds:.3f}x) "
                  f"rel {error:.2e}, {launch.grid[0]} blocks", flush=True)


def stored_best(service: Service, problem: dict[str, Any]) -> dict[str, Any] | None:
    """The fastest stored config within the error bound, tuned on this very problem, or None."""
    try:
        answer = service.best(kernel=SPEC.name, arch=ARCH, problem=problem, max_error=bound(problem))
    except NotFound:
        return None
    return answer.config if answer.exact else None


def tune(problem: dict[str, Any], db: str, trials: int, seed: int) -> None:
    """One study through the CLI's own entry point (`tuner run`, in this process: no interpreter
    start per row; one GPU: the local executor), with the default sampler and its warm start from
    the nearest tuned shapes; every variant is already in the compile cache (build_all). A study
    that exists resumes with ``trials`` more."""
    shape = ",".join(f"{key}={problem[key]}" for key in ("M", "N", "K", "layout", "out_dtype") if key in problem)
    argv = ["run", "--arch", ARCH, "--kernel", SPEC.name, "--shape", shape, "--dtype", problem["dtype"],
            "--trials", str(trials), "--seed", str(seed), "--db", db, "--executor", "local", "--no-progress"]
    print("+ tuner", " ".join(argv), flush=True)
    os.environ["COLUMNS"] = "250"  # the run's summary on one line
    status = cli.main(argv)
    if status:
        print(f"tuner run exited with {status}", flush=True)


def tuning_order(problems: list[dict[str, Any]]) -> list[int]:
    """Row indices, the shape of the default problem (4096^3 nn) first, then the others, each
    shape's dtypes in turn: the first study of a dtype is the one the others warm-start from."""
    default = SPEC.default_problem()
    shapes = [(m, n, k) for m, n, k, _ in SQUARES + PROJECTIONS + ODD]

    def key(i: int) -> tuple[bool, int, int]:
        problem = problems[i]
        return (any(problem[k] != default[k] for k in ("M", "N", "K", "layout")),
                shapes.index((problem["M"], problem["N"], problem["K"])), i)

    return sorted(range(len(problems)), key=key)


def best_configs(db: str, trials: int, deadline: float, retune: bool = False,
                 selected: set[int] | None = None) -> dict[int, dict[str, Any]]:
    """Row index -> its best stored config, tuning the missing rows (every row with ``retune``) until
    ``deadline``; a row with no stored study of its dtype and layout yet (nothing comparable to
    warm-start from) gets COLD_TRIALS_FACTOR times ``trials``."""
    store = Store.open(db)
    service = Service(store)
    problems = rows()
    found = {}
    for index in tuning_order(problems):
        if selected is not None and index not in selected:
            continue
        missing = retune or stored_best(service, problems[index]) is None
        if missing and trials and time.monotonic() < deadline:
            cold = not any(study.kernel == SPEC.name and all(study.problem.get(k) == problems[index][k]
                                                             for k in ("dtype", "layout"))
                           for study in store.studies())
            tune(problems[index], db, trials * (COLD_TRIALS_FACTOR if cold else 1), seed=index + 1)
        if (config := stored_best(service, problems[index])) is not None:
            found[index] = config
    return found


def median_s(launch: Callable[[], Any], out: torch.Tensor) -> float:
    return statistics.median(time_launches(launch, out, POLICY))


def tuned_launch(config: dict[str, Any], problem: dict[str, Any], inputs: dict[str, torch.Tensor],
                 out: torch.Tensor) -> Callable[[], None]:
    source = SPEC.render(config, problem)
    artifact = BACKEND.compile(source, TARGET)
    if artifact.error is not None:
        raise SystemExit(f"the stored config {config} no longer compiles: {artifact.error}")
    return launcher(artifact.path, source, SPEC.kernel_inputs(inputs, config), out)


def output(problem: dict[str, Any]) -> torch.Tensor:
    spec = SPEC.output_spec(problem)
    return torch.empty(spec.shape, dtype=getattr(torch, spec.dtype), device="cuda")


def cublas_launch(problem: dict[str, Any], inputs: dict[str, torch.Tensor], out: torch.Tensor) -> Callable[[], Any]:
    """cuBLAS on the row's inputs into ``out``: torch.matmul, or for FP8 torch._scaled_mm (A row-major,
    B = W.T column-major, the per-tensor scales, the tensor cores' own accumulation)."""
    a, b = inputs["a"], inputs["b"]
    b = b if problem["layout"] == "nn" else b.T
    if problem["dtype"] != "e4m3":
        return lambda: torch.matmul(a, b, out=out)
    scale_a, scale_b = inputs["a_scale"], inputs["b_scale"]
    return lambda: torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=out.dtype,
                                    use_fast_accum=True, out=out)


def interleaved_s(launches: list[Callable[[], Any]], out: torch.Tensor) -> list[float]:
    """The median seconds of each launch, timed in ROUNDS alternating rounds."""
    samples: list[list[float]] = [[] for _ in launches]
    for _ in range(ROUNDS):
        for seconds, launch in zip(samples, launches, strict=True):
            seconds += time_launches(launch, out, ROUND)
    return [statistics.median(seconds) for seconds in samples]


def measure_row(index: int, problem: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    inputs = SPEC.make_inputs(problem, np.random.default_rng(index))
    ref = SPEC.reference(inputs, problem)
    out = output(problem)
    launches = [tuned_launch(config, problem, inputs, out), cublas_launch(problem, inputs, out)]
    tuned_s, cublas_s = interleaved_s(launches, out)
    rel_err, cublas_err = (launched_error(launch, out, ref) for launch in launches)
    flops = SPEC.flops(problem)
    return {"M": problem["M"], "N": problem["N"], "K": problem["K"], "layout": problem["layout"],
            "dtype": problem["dtype"], **{k: problem[k] for k in ("out_dtype",) if k in problem},
            "config": config, "tuned_tflops": flops / tuned_s / 1e12,
            "cublas_tflops": flops / cublas_s / 1e12, "rel_err": rel_err, "ratio": cublas_s / tuned_s,
            "tuned_us": tuned_s * 1e6, "cublas_us": cublas_s * 1e6, "cublas_rel_err": cublas_err}


def launched_error(launch: Callable[[], Any], out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative L2 error of one launch into a poisoned output."""
    poison(out)
    launch()
    torch.cuda.synchronize()
    return error_metrics(out, ref)[0]


def _label(problem: dict[str, Any]) -> str:
    return f"{problem['M']}x{problem['N']}x{problem['K']} {problem['layout']} {_types(problem)}"


def _types(problem: dict[str, Any]) -> str:
    """The row's dtype, and for FP8 its output type: ``e4m3->bf16``."""
    return f"{problem['dtype']}->{problem['out_dtype']}" if "out_dtype" in problem else problem["dtype"]


def _config_text(config: dict[str, Any]) -> str:
    return ",".join(str(config.get(p.name, p.stored_default)) for p in SPEC.params)  # a knob not stored: its default


def table(measured: list[dict[str, Any]]) -> str:
    names = ",".join(p.name for p in SPEC.params)
    lines = [f"| M | N | K | layout | dtype | config ({names}) | tuned TFLOP/s | cuBLAS TFLOP/s | x cuBLAS | rel err |",
             "|" + "---|" * 10]
    for r in measured:
        lines.append(f"| {r['M']} | {r['N']} | {r['K']} | {r['layout']} | {_types(r)} | {_config_text(r['config'])} | "
                     f"{r['tuned_tflops']:.0f} | {r['cublas_tflops']:.0f} | {r['ratio']:.3f} | {r['rel_err']:.2e} |")
    for name, anchor, fp8 in (("16-bit", "cuBLAS", False), ("FP8", "torch._scaled_mm", True)):
        kind = [r for r in measured if (r["dtype"] == "e4m3") == fp8]
        if not kind:
            continue
        ahead = sum(r["ratio"] >= 1.0 for r in kind)
        close = sum(r["ratio"] >= 0.95 for r in kind)
        within = sum(r["rel_err"] <= bound(r) for r in kind)
        lines.append(f"\n{name}: {ahead} of {len(kind)} rows at >= 1.0x {anchor}, {close} at >= 0.95x; "
                     f"{within} within the error bound")
    return "\n".join(lines) + "\n"


def plot(measured: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, width = np.arange(len(measured)), 0.4
    fig, ax = plt.subplots(figsize=(max(12, len(measured) * 0.6), 5))
    ax.bar(x - width / 2, [r["tuned_tflops"] for r in measured], width, label="tuned gemm (tuner best)")
    ax.bar(x + width / 2, [r["cublas_tflops"] for r in measured], width,
           label="cuBLAS (torch.matmul; FP8: torch._scaled_mm)")
    ax.set_xticks(x, [_label(r) for r in measured], rotation=70, ha="right", fontsize=8)
    ax.set_ylabel("TFLOP/s")
    ax.set_title("GEMM on H200: the tuned template vs cuBLAS")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def sass_report(measured: list[dict[str, Any]], path: Path) -> None:
    """Each winning binary's HGMMA (FP8: QGMMA) lines (cuobjdump --dump-sass), with its local-memory count."""
    seen, text = set(), []
    for r in measured:
        problem = SPEC.validate_problem({k: r[k] for k in ("M", "N", "K", "layout", "dtype", "out_dtype") if k in r})
        artifact = BACKEND.compile(SPEC.render(r["config"], problem), TARGET)
        if artifact.path in seen:
            continue
        seen.add(artifact.path)
        sass = dump_sass(artifact.path)
        mma = mma_mnemonic(problem)
        hgmma = [line.strip() for line in sass.splitlines() if mma in line]
        text.append(f"== {_config_text(r['config'])} {_types(r)} {r['layout']}: {len(hgmma)} {mma}, "
                    f"{count(sass, 'LDL') + count(sass, 'STL')} LDL/STL, {count(sass, 'UTMALDG')} UTMALDG, "
                    f"resources {artifact.resources}")
        text += hgmma
    path.write_text("\n".join(text) + "\n")


def benchmark(configs: dict[int, dict[str, Any]], out: Path, selected: set[int], stem: str) -> None:
    problems = rows()
    measured = []
    for index in sorted(configs):
        measured.append(measure_row(index, problems[index], configs[index]))
        r = measured[-1]
        print(f"row {index} {_label(r)}: {r['tuned_tflops']:.0f} vs {r['cublas_tflops']:.0f} TFLOP/s "
              f"({r['ratio']:.3f}x), rel {r['rel_err']:.2e}", flush=True)
    result = {**header(), "rows": measured, "missing": [problems[i] for i in sorted(selected) if i not in configs]}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = table(measured)
    (out / f"{stem}.md").write_text(text)
    print(text)
    plot(measured, out / f"{stem}.png")
    sass_report(measured, out / f"{stem}.sass.txt")


def stream_k_candidates(problem: dict[str, Any], winner: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream-K configs check() admits for the row: the winner's tile with stream_k, then
    STREAM_K_CONFIGS."""
    device, found = BACKEND.device(TARGET), {}
    for config in [winner | {"cluster": 1, "split_k": 1, "schedule": "cooperative", "persistent": True,
                             "stream_k": True}] + STREAM_K_CONFIGS:
        if SPEC.check(config, problem, device) is None:
            found.setdefault(_config_text(config), config)
    return list(found.values())


def stream_k_report(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]], out: Path) -> None:
    """Each row's data-parallel winner (stored before this run's tuning), its winner after the tuning
    and the fastest stream-K candidate, timed in alternating rounds beside cuBLAS:
    ``gemm_streamk.{json,md}``."""
    problems, measured = rows(), []
    for index in sorted(after):
        problem = problems[index]
        inputs = SPEC.make_inputs(problem, np.random.default_rng(index))
        ref = SPEC.reference(inputs, problem)
        result = output(problem)
        candidates = stream_k_candidates(problem, before.get(index, after[index]))
        quick = [median_s_round(tuned_launch(c, problem, inputs, result), result) for c in candidates]
        for config, seconds in zip(candidates, quick, strict=True):
            print(f"row {index} {_label(problem)} stream-K {_config_text(config)}: "
                  f"{SPEC.flops(problem) / seconds / 1e12:.0f} TFLOP/s", flush=True)
        named = {"data-parallel": before.get(index), "tuned": after[index],
                 "stream-K": candidates[int(np.argmin(quick))] if candidates else None}
        named = {name: config for name, config in named.items() if config is not None}
        launches = [tuned_launch(config, problem, inputs, result) for config in named.values()]
        launches.append(cublas_launch(problem, inputs, result))
        seconds = interleaved_s(launches, result)
        errors = [launched_error(launch, result, ref) for launch in launches]
        flops, cublas_s = SPEC.flops(problem), seconds[-1]
        row = {"M": problem["M"], "N": problem["N"], "K": problem["K"], "layout": problem["layout"],
               "dtype": problem["dtype"], "cublas_tflops": flops / cublas_s / 1e12, "cublas_rel_err": errors[-1],
               "kernels": {name: {"config": config, "tflops": flops / s / 1e12, "ratio": cublas_s / s,
                                  "rel_err": error, "within_bound": error <= bound(problem)}
                           for (name, config), s, error in zip(named.items(), seconds, errors, strict=False)}}
        measured.append(row)
        print(f"row {index} {_label(problem)}: " + ", ".join(
            f"{name} {k['tflops']:.0f} TFLOP/s ({k['ratio']:.3f}x, rel {k['rel_err']:.1e})"
            for name, k in row["kernels"].items()) + f"; cuBLAS {row['cublas_tflops']:.0f}", flush=True)
    (out / "gemm_streamk.json").write_text(json.dumps({**header(), "rows": measured}, indent=1) + "\n")
    names = ",".join(p.name for p in SPEC.params)
    lines = [f"| M | N | K | dtype | kernel | config ({names}) | TFLOP/s | x cuBLAS | rel err |", "|" + "---|" * 9]
    for r in measured:
        lines += [f"| {r['M']} | {r['N']} | {r['K']} | {r['dtype']} | {name} | {_config_text(k['config'])} | "
                  f"{k['tflops']:.0f} | {k['ratio']:.3f} | {k['rel_err']:.2e} |" for name, k in r["kernels"].items()]
        lines.append(f"| {r['M']} | {r['N']} | {r['K']} | {r['dtype']} | cuBLAS | | {r['cublas_tflops']:.0f} | 1 | "
                     f"{r['cublas_rel_err']:.2e} |")
    text = "\n".join(lines) + "\n"
    (out / "gemm_streamk.md").write_text(text)
    print(text)


def median_s_round(launch: Callable[[], Any], out: torch.Tensor) -> float:
    """One round's median (a candidate's quick look)."""
    return statistics.median(time_launches(launch, out, ROUND))


def profile(row: str, db: str | None) -> None:
    """Launches a config once after a warm-up launch, then torch.matmul once, for ncu to capture:
    row ``row``'s stored best, or for ``row`` = 'CONFIG_JSON PROBLEM_JSON' those keys over
    REFERENCE_CONFIG and the default problem."""
    if row.isdigit():
        problem = rows()[int(row)]
        config = stored_best(Service(Store.open(db)), problem) if db else None
        if config is None:
            raise SystemExit(f"no stored config for {_label(problem)}: run the benchmark first (and give --db)")
    else:
        changes, end = json.JSONDecoder().raw_decode(row)
        problem = SPEC.validate_problem(json.loads(row[end:]))
        config = reference_config(problem) | changes
    inputs = SPEC.make_inputs(problem, np.random.default_rng(0))
    out = output(problem)
    launch = tuned_launch(config, problem, inputs, out)
    launch(), launch()
    cublas_launch(problem, inputs, out)()
    torch.cuda.synchronize()
    print(_label(problem), config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="the tuning database's URL (not needed with --check)")
    parser.add_argument("--out", default="bench/results", type=Path)
    parser.add_argument("--trials", type=int, default=24, help="trials of `tuner run` for a row with no stored config")
    parser.add_argument("--retune", action="store_true", help="give every row's study --trials more, tuned or not")
    parser.add_argument("--tune-for", type=float, default=1e9, help="start no new study after this many seconds")
    parser.add_argument("--check", action="store_true", help="build every variant, verify every row's shape, then stop")
    parser.add_argument("--profile", metavar="ROW",
                        help="launch one row's stored config, or 'CONFIG_JSON PROBLEM_JSON' (for ncu)")
    parser.add_argument("--probe", action="store_true", help="time a few tiles beside cuBLAS, then stop")
    parser.add_argument("--build", action="store_true", help="build every variant the rows admit, then stop")
    parser.add_argument("--stream-k", action="store_true",
                        help="after tuning, time the rows' data-parallel winners, tuned winners and stream-K "
                             "candidates beside cuBLAS (gemm_streamk.*)")
    parser.add_argument("--rows", choices=("all", "fp8", "16-bit", "odd"), default="all",
                        help="tune, build and measure these rows alone (row numbers stay those of all; "
                             "results as gemm_vs_cublas_ROWS.*)")
    args = parser.parse_args()
    if args.probe:
        return probe()
    selected = {i for i, p in enumerate(rows()) if selects(args.rows, p)}
    chosen = [p for i, p in enumerate(rows()) if i in selected]
    if args.build:
        raise SystemExit(1 if build_all(chosen) else 0)
    if args.check:
        raise SystemExit(check())
    if args.profile is not None:
        return profile(args.profile, args.db)
    if not args.db:
        parser.error("--db is required unless --check, --probe or --profile")
    build_all(chosen)  # the studies find every variant compiled
    before = {}  # with --stream-k: the rows' winners before this run's tuning, if data-parallel
    if args.stream_k:
        service = Service(Store.open(args.db))
        stored = {i: stored_best(service, rows()[i]) for i in selected}
        before = {i: c for i, c in stored.items() if c is not None and not c.get("stream_k")}
    configs = best_configs(args.db, args.trials, time.monotonic() + args.tune_for, args.retune, selected)
    print(f"{len(configs)} of {len(selected)} rows have a tuned config", flush=True)
    if args.stream_k:
        return stream_k_report(before, configs, args.out)
    if configs:
        benchmark(configs, args.out, selected, "gemm_vs_cublas" + ("" if args.rows == "all" else f"_{args.rows}"))


if __name__ == "__main__":
    main()
