"""The service's best attention config against PyTorch SDPA (flash, efficient, cuDNN), in one run.

Two template families: ``mma_sync`` (FA2-style, every seed shape, tuned through ``tuner run
--sampler grid`` over every admitted config) and ``wgmma`` (the Hopper family, FA3-style: the
headline shapes and the D=256 rows tuned through ``tuner run --family wgmma --trials N`` with the
default sampler; the other seed shapes get the config of the nearest tuned shape). Each family keeps
its own database. For each shape: each family's fastest stored exact-bound config (``Service.best``),
the family the tuner chooses (the lower stored median), then, in this one process, both families'
kernels and SDPA's three backends timed the same way (``cuda_measure.time_launches``: L2 flushed
before every run, one event pair per run, median of >= 50) on the same fresh random
inputs. Writes ``attention_vs_sdpa.{json,md,png}``.
    bench/attention_vs_sdpa.sh    (unpacks bench/results/attention{,_hopper}_tuned.db.gz and runs the steps below)
    python3 -P bench/attention_vs_sdpa.py --db sqlite:///path/attention_tuned.db --hopper-db sqlite:///...
    python3 -P bench/attention_vs_sdpa.py --db ... --profile 16,96,512,64,0,fp16   (one launch, for ncu)
    python3 -P bench/attention_vs_sdpa.py --db ... --hopper-db ... --fp8   (the FP8 rows alone)

``--fp8``: the headline shapes and 2,32,8192,128, fp16 with ``fp8=true``, causal and not: the
wgmma family tuned on each (its e4m3 configs beside the exact ones, one study), the fastest stored
config within the e4m3 bound timed beside SDPA cuDNN fp16 on the same inputs; µs per head,
TFLOP/s-equivalent (the fp16 FLOPs), error; the published FP8 anchors beside them.
Writes ``attention_vs_sdpa_fp8.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from tuner.db import Store
from tuner.kernel_templates import Target, find_spec, kernel_spec
from tuner.kernel_templates.families import own_config
from tuner.service import NotFound, Service
from tuner.workers import TimingPolicy, get_backend
from tuner.workers.cuda_launch import launcher
from tuner.workers.cuda_measure import error_metrics, time_launches
from tuner.workers.cuda_runtime import environment

ARCH = "sm_90a"
TARGET = Target.documented(ARCH)
FAMILIES = {family: find_spec("attention", ARCH, family) for family in ("mma_sync", "wgmma")}
SPEC = FAMILIES["mma_sync"]  # the problem is the same in every family
HOPPER = "wgmma"
# Trials of one wgmma study (the default sampler, warm-started from the shapes tuned before it).
HOPPER_TRIALS = 12
SDPA = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION}
POLICY = TimingPolicy(warmup_s=0.02, budget_s=0.2, min_repeats=50)
HEADLINE = ((16, 96, 512, 64), (16, 96, 512, 128), (2, 32, 4096, 128), (2, 96, 4096, 64))
REPEAT = (2, 96, 4096, 64)  # re-measured at the end: a 2.6 ms kernel, long enough for a 2 % check
# --candidates: tiles (block_m, block_n, warps, stages, occupancy) by head dim, each in both rescale
# modes with fast exp2, timed beside SDPA flash on the rows the last full tuning lost to it
CANDIDATE_ROWS = (((16, 8, 512, 128), False, "fp16"), ((16, 32, 512, 128), False, "fp16"),
                  ((16, 96, 512, 128), False, "bf16"), ((2, 32, 4096, 64), True, "fp16"),
                  ((2, 96, 4096, 64), True, "fp16"))
CANDIDATE_TILES = {
    128: ((128, 32, 4, 2, 8), (128, 64, 4, 2, 8), (128, 128, 8, 2, 8), (128, 64, 8, 2, 8),
          (128, 64, 8, 2, 16), (128, 32, 8, 2, 16)),
    64: ((128, 32, 4, 3, 8), (128, 64, 4, 2, 8), (128, 64, 8, 2, 8), (128, 64, 8, 2, 16),
         (128, 32, 8, 2, 16), (128, 128, 8, 2, 8), (64, 64, 4, 2, 16), (64, 32, 4, 2, 16)),
}


# Head dim 256 (the wgmma family alone runs it), causal and not, fp16.
WIDE = ((4, 16, 2048, 256),)
# FP8 rows (e4m3 configs of the wgmma family on fp16 problems with fp8=true), causal and not.
FP8_SHAPES = (*HEADLINE, (2, 32, 8192, 128))
# Published FP8 forward anchors (TFLOP/s-equivalent), quoted beside the FP8 rows; neither runs here.
PUBLISHED_FP8 = ("FlashAttention-3 FP8 on H100 (paper, fig. 7; hd128, non-causal): 348 at S=512 rising to about "
                 "1000 at 16k. cuDNN 9 FP8 on H200 (NVIDIA's cudnn-frontend results): about 870-1060 at 2k-32k.")


def seed_shapes() -> list[dict[str, Any]]:
    """20 fp16 problems, then the 4 headline shapes in bf16, each causal and not; then D=256."""
    fp16 = [(16, h, 512, d) for h in (8, 32, 96) for d in (64, 128)]
    fp16 += [(2, h, 4096, d) for h in (32, 96) for d in (64, 128)]
    return [_problem(shape, causal, dtype) for dtype, shapes in (("fp16", fp16), ("bf16", HEADLINE), ("fp16", WIDE))
            for shape in shapes for causal in (False, True)]


def hopper_tuned(problem: dict[str, Any]) -> bool:
    """Whether the wgmma family tunes this shape itself (else it takes the nearest tuned shape's config)."""
    return tuple(problem[k] for k in "BHSD") in HEADLINE + WIDE


def _problem(shape: tuple[int, ...], causal: bool, dtype: str) -> dict[str, Any]:
    return SPEC.validate_problem(dict(zip("BHSD", shape, strict=True), causal=causal, dtype=dtype))


def exact_bound(problem: dict[str, Any]) -> float:
    """The error bound of the template's exact variants: rel. L2 2e-3 (fp16), 1e-2 (bf16)."""
    return SPEC.max_error({"precision": "exact"}, problem)


def stored_answer(service: Service, problem: dict[str, Any], nearest: bool = False,
                  max_error: float | None = None) -> Any:
    """The fastest stored answer within ``max_error`` (the exact bound by default), tuned on this
    very problem (or, with ``nearest``, on the nearest tuned one), or None."""
    bound = exact_bound(problem) if max_error is None else max_error
    try:
        answer = service.best(kernel=SPEC.name, arch=ARCH, problem=problem, max_error=bound)
    except NotFound:
        return None
    return answer if answer.exact or nearest else None


def fp8_problems() -> list[dict[str, Any]]:
    return [SPEC.validate_problem(dict(zip("BHSD", shape, strict=True), causal=causal, dtype="fp16", fp8=True))
            for shape in FP8_SHAPES for causal in (False, True)]


def stored_fp8_answer(service: Service, problem: dict[str, Any]) -> Any:
    """The fastest config stored for this very problem within the e4m3 bound (e4m3 or exact), or None."""
    return stored_answer(service, problem, max_error=SPEC.max_error({"precision": "e4m3"}, problem))


def stored_best(service: Service, problem: dict[str, Any]) -> dict[str, Any] | None:
    answer = stored_answer(service, problem)
    return answer and answer.config


def tune(problem: dict[str, Any], db: str, family: str) -> None:
    """One study through the CLI, as a user runs it (single GPU: the in-process executor, which
    compiles the proposed variants ahead on threads while the GPU measures): the
    mma_sync family walks its whole grid (the best config is then the template's best for the
    shape, not a lucky draw), the wgmma family HOPPER_TRIALS of the default sampler."""
    shape = ",".join(f"{key}={str(value).lower()}" for key, value in problem.items())
    search = ["--trials", str(HOPPER_TRIALS)] if family == HOPPER else ["--sampler", "grid"]
    command = [sys.executable, "-P", "-m", "tuner", "run", "--arch", ARCH, "--kernel", SPEC.name,
               "--family", family, "--shape", shape, *search, "--seed", "1", "--db", db,
               "--executor", "local", "--no-progress"]
    print("+", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL)


def compile_all(pairs: list[tuple[dict[str, Any], dict[str, Any]]], family: str = "mma_sync") -> None:
    """Compiles each distinct kernel of these (config, problem) pairs, nvcc processes in parallel."""
    spec = FAMILIES[family]
    sources = {source.code_digest(): source for source in itertools.starmap(spec.render, pairs)}
    backend = get_backend("cuda")
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(lambda source: backend.compile(source, TARGET), sources.values()))


def runs(family: str, problem: dict[str, Any]) -> bool:
    """Whether any config of ``family`` runs ``problem`` (mma_sync has no D=256)."""
    spec = FAMILIES[family]
    names = [p.name for p in spec.params]
    device = get_backend("cuda").device(TARGET)
    return any(spec.check(dict(zip(names, v, strict=True)), problem, device) is None
               for v in itertools.product(*(p.choices for p in spec.params)))


def best_configs(db: str, family: str, deadline: float) -> dict[int, Any]:
    """Index of each seed shape -> ``family``'s best stored answer, tuning the missing ones (the
    wgmma family: the shapes it tunes itself) until ``deadline``; the wgmma family answers the
    other shapes from the nearest tuned one."""
    service = Service(Store.open(db))
    shapes = seed_shapes()
    wanted = [p for p in shapes if runs(family, p) and (family != HOPPER or hopper_tuned(p))]
    for problem in wanted:
        if stored_best(service, problem) is None and time.monotonic() < deadline:
            tune(problem, db, family)
    found = {}
    for index, problem in enumerate(shapes):
        answer = stored_answer(service, problem, nearest=family == HOPPER) if runs(family, problem) else None
        if answer is not None and fits(family, answer.config, problem):
            found[index] = answer
    return found


def fits(family: str, config: dict[str, Any], problem: dict[str, Any]) -> bool:
    """Whether the family admits a stored config for ``problem``: the nearest tuned shape's config
    may not (a D=64 tile ring needs twice the shared memory at D=128, four times at D=256, past
    what a block may have: the driver then refuses the launch's shared-memory opt-in)."""
    device = get_backend("cuda").device(TARGET)
    return FAMILIES[family].check(own_config(config), problem, device) is None


def median_s(launch: Callable[[], None], out: torch.Tensor) -> float:
    return statistics.median(time_launches(launch, out, POLICY))


def tuned_launch(config: dict[str, Any], problem: dict[str, Any], inputs: dict[str, torch.Tensor],
                 out: torch.Tensor) -> Callable[[], None]:
    source = kernel_spec(SPEC.name, ARCH).render(config, problem)  # the config names its family
    artifact = get_backend("cuda").compile(source, TARGET)
    if artifact.error is not None:
        raise SystemExit(f"the stored config {config} no longer compiles: {artifact.error}")
    return launcher(artifact.path, source, SPEC.kernel_inputs(inputs, config), out)


def time_tuned(config: dict[str, Any], problem: dict[str, Any], inputs: dict[str, torch.Tensor],
               ref: torch.Tensor) -> tuple[float, float]:
    """Median seconds and the rel. L2 error of the last timed run's output."""
    out = torch.empty_like(inputs["q"])
    seconds = median_s(tuned_launch(config, problem, inputs, out), out)
    return seconds, error_metrics(out, ref)[0]


def time_sdpa(backend: SDPBackend, problem: dict[str, Any], inputs: dict[str, torch.Tensor],
              ref: torch.Tensor) -> tuple[float | None, float | None]:
    """Median seconds and rel. L2 error of one SDPA backend, or Nones where it refuses the shape."""
    q, k, v = inputs["q"], inputs["k"], inputs["v"]

    def launch() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=problem["causal"])

    poison = torch.empty(1, device="cuda")  # SDPA allocates its output; the timer poisons this
    try:
        with sdpa_kernel(backend):
            error = error_metrics(launch(), ref)[0]
            return median_s(launch, poison), error
    except RuntimeError as exc:
        print(f"   {backend.name} refused: {str(exc).splitlines()[0]}")
        return None, None


def measure_row(index: int, problem: dict[str, Any], answers: dict[str, Any]) -> dict[str, Any]:
    """Every family's best (the chosen one's numbers as the row's own) and SDPA's backends."""
    inputs = SPEC.make_inputs(problem, np.random.default_rng(index))
    ref = SPEC.reference(inputs, problem)
    families = {}
    for family, answer in answers.items():
        seconds, rel_l2 = time_tuned(answer.config, problem, inputs, ref)
        families[family] = {"config": answer.config, "us": seconds * 1e6, "tflops": tflops(problem, seconds),
                            "rel_l2": rel_l2, "stored_us": answer.trial.median_s * 1e6,
                            "tuned_on_this_shape": answer.exact}
    chosen = min(answers, key=lambda f: answers[f].trial.median_s if answers[f].exact else math.inf)
    mine = families[chosen]
    row = {**problem, "family": chosen, "config": mine["config"], "tuned_us": mine["us"],
           "tuned_tflops": mine["tflops"], "rel_l2": mine["rel_l2"], "families": families}
    for name, backend in SDPA.items():
        other, error = time_sdpa(backend, problem, inputs, ref)
        row[f"{name}_us"], row[f"{name}_tflops"] = other and other * 1e6, other and tflops(problem, other)
        row[f"{name}_rel_l2"] = error
    return row


def tflops(problem: dict[str, Any], seconds: float) -> float:
    return SPEC.flops(problem) / seconds / 1e12


def repeatability(problem: dict[str, Any], config: dict[str, Any], first_us: float) -> dict[str, Any]:
    """A row's config measured again at the end of the run, on new inputs."""
    inputs = SPEC.make_inputs(problem, np.random.default_rng(10_000))
    last_us = time_tuned(config, problem, inputs, SPEC.reference(inputs, problem))[0] * 1e6
    return {"problem": problem, "config": config, "first_us": first_us, "last_us": last_us,
            "diff_pct": 100 * abs(last_us - first_us) / first_us}


def ceilings() -> dict[str, float]:
    """METHOD.md's two ceilings, measured here: fp16 matmul TFLOP/s and copy TB/s (read + write)."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    matmul = median_s(lambda: torch.mm(a, a), torch.empty(1, device="cuda"))
    src = torch.randn(1 << 28, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    copy = median_s(lambda: dst.copy_(src), torch.empty(1, device="cuda"))
    return {"matmul_fp16_tflops": 2 * 8192**3 / matmul / 1e12, "copy_tbps": 2 * src.nbytes / copy / 1e12}


def header() -> dict[str, Any]:
    env = environment()
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return {"device": env.get("device"), "driver": driver, "torch": torch.__version__,
            "cuda": torch.version.cuda, "compiler": env.get("compiler"),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: the chosen family and config, µs per head (total / H), TFLOP/s of each family and
    backend (a family's * where it runs a nearer shape's config), ratios to flash and cuDNN."""
    head = ("| B | H | S | D | causal | dtype | chosen | config | ours µs/head | ours | mma_sync | wgmma | "
            "flash | efficient | cuDNN | x flash | x cuDNN | rel L2 |")
    lines = [head, "|" + "---|" * 18]
    for r in rows:
        config = ",".join(str(v) for v in r["config"].values())
        lines.append(f"| {r['B']} | {r['H']} | {r['S']} | {r['D']} | {'yes' if r['causal'] else 'no'} | "
                     f"{r['dtype']} | {r['family']} | {config} | {r['tuned_us'] / r['H']:.2f} | "
                     f"{r['tuned_tflops']:.0f} | {_family(r, 'mma_sync')} | {_family(r, HOPPER)} | "
                     f"{_num(r['flash_tflops'])} | {_num(r['efficient_tflops'])} | {_num(r['cudnn_tflops'])} | "
                     f"{_ratio(r, 'flash')} | {_ratio(r, 'cudnn')} | {r['rel_l2']:.2e} |")
    return "\n".join(lines) + "\n"


def _family(row: dict[str, Any], family: str) -> str:
    numbers = row["families"].get(family)
    if numbers is None:
        return "—"
    return f"{numbers['tflops']:.0f}" + ("" if numbers["tuned_on_this_shape"] else "*")


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _ratio(row: dict[str, Any], name: str) -> str:
    other = row[f"{name}_tflops"]
    return "—" if other is None else f"{row['tuned_tflops'] / other:.2f}"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['B']},{r['H']},{r['S']},{r['D']}{' c' if r['causal'] else ''} {r['dtype']}" for r in rows]
    series = {f"tuned {family}": [r["families"].get(family, {}).get("tflops", 0) for r in rows]
              for family in FAMILIES}
    series |= {name: [r[key] or 0 for r in rows] for name, key in
               (("SDPA flash", "flash_tflops"), ("SDPA efficient", "efficient_tflops"), ("SDPA cuDNN", "cudnn_tflops"))}
    x, width = np.arange(len(rows)), 0.16
    fig, ax = plt.subplots(figsize=(max(12, len(rows) * 0.8), 5))
    for offset, (name, values) in enumerate(series.items()):
        ax.bar(x + (offset - 2) * width, values, width, label=name)
    ax.set_xticks(x, labels, rotation=70, ha="right", fontsize=8)
    ax.set_ylabel("TFLOP/s (causal counts half)")
    ax.set_title("Attention forward on H200: both tuned template families vs PyTorch SDPA")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def profile(text: str, dbs: dict[str, str], family: str | None) -> None:
    """Launches the stored best config of one shape (of ``family``, or the chosen family's) once
    after a warm-up, for ncu to capture."""
    b, h, s, d, causal, dtype = text.split(",")
    problem = _problem((int(b), int(h), int(s), int(d)), causal in ("1", "true"), dtype)
    answers = [a for f, db in dbs.items()
               if family in (None, f) and (a := stored_answer(Service(Store.open(db)), problem))]
    if not answers:
        raise SystemExit(f"no stored config for {problem}: run the benchmark first")
    config = min(answers, key=lambda a: a.trial.median_s).config
    inputs = SPEC.make_inputs(problem, np.random.default_rng(0))
    launch = tuned_launch(config, problem, inputs, torch.empty_like(inputs["q"]))
    launch(), launch()
    torch.cuda.synchronize()
    print(problem, config)


def benchmark(answers: dict[str, dict[int, Any]], out: Path) -> None:
    """``answers``: family -> seed-shape index -> its stored best answer."""
    shapes = seed_shapes()
    indices = sorted({i for found in answers.values() for i in found})
    for family, found in answers.items():  # the kernels to time, built in parallel first
        compile_all([(answer.config, shapes[i]) for i, answer in found.items()], family)
    rows = [measure_row(i, shapes[i], {f: found[i] for f, found in answers.items() if i in found}) for i in indices]
    repeat = next((i for i, row in enumerate(rows) if tuple(row[k] for k in "BHSD") == REPEAT
                   and not row["causal"] and row["dtype"] == "fp16"), 0)
    index = indices[repeat]
    result = {**header(), "ceilings": ceilings(), "rows": rows,
              "repeatability": repeatability(shapes[index], rows[repeat]["config"], rows[repeat]["tuned_us"]),
              "missing": {f: [shapes[i] for i in range(len(shapes)) if i not in found and runs(f, shapes[i])]
                          for f, found in answers.items()}}
    (out / "attention_vs_sdpa.json").write_text(json.dumps(result, indent=1) + "\n")
    text = table(rows)
    (out / "attention_vs_sdpa.md").write_text(text)
    print(text)
    print("repeatability:", json.dumps(result["repeatability"]), "\nceilings:", result["ceilings"])
    plot(rows, out / "attention_vs_sdpa.png")


def fp8_rows(db: str, deadline: float, out: Path) -> None:
    """The FP8 rows (module docstring): tuned where the database has none, then timed."""
    service = Service(Store.open(db))
    problems = fp8_problems()
    for problem in [p for p in problems if stored_fp8_answer(service, p) is None]:
        if time.monotonic() < deadline:
            tune(problem, db, HOPPER)
    answers = {i: a for i, p in enumerate(problems) if (a := stored_fp8_answer(service, p)) is not None}
    compile_all([(answer.config, problems[i]) for i, answer in answers.items()], HOPPER)
    rows = []
    for index, answer in answers.items():
        problem = problems[index]
        inputs = SPEC.make_inputs(problem, np.random.default_rng(index))
        ref = SPEC.reference(inputs, problem)
        seconds, rel_l2 = time_tuned(answer.config, problem, inputs, ref)
        cudnn_s, cudnn_l2 = time_sdpa(SDPA["cudnn"], problem, inputs, ref)
        rows.append({**problem, "config": answer.config, "precision": answer.config.get("precision"),
                     "us_per_head": seconds * 1e6 / problem["H"], "tflops": tflops(problem, seconds),
                     "rel_l2": rel_l2, "stored_rel_l2": answer.trial.rel_l2,
                     "cudnn_fp16_tflops": cudnn_s and tflops(problem, cudnn_s), "cudnn_fp16_rel_l2": cudnn_l2})
        print(rows[-1], flush=True)
    missing = [problems[i] for i in range(len(problems)) if i not in answers]
    (out / "attention_vs_sdpa_fp8.json").write_text(json.dumps(
        {**header(), "published": PUBLISHED_FP8, "rows": rows, "missing": missing}, indent=1) + "\n")
    lines = ["| B,H,S,D | causal | precision | config | µs/head | TFLOP/s-eq. | rel L2 | cuDNN fp16 | x cuDNN |",
             "|" + "---|" * 9]
    for r in rows:
        config = ",".join(str(v) for v in r["config"].values())
        ratio = "—" if r["cudnn_fp16_tflops"] is None else f"{r['tflops'] / r['cudnn_fp16_tflops']:.2f}"
        lines.append(f"| {r['B']},{r['H']},{r['S']},{r['D']} | {'yes' if r['causal'] else 'no'} | {r['precision']} | "
                     f"{config} | {r['us_per_head']:.2f} | {r['tflops']:.0f} | {r['rel_l2']:.1e} | "
                     f"{_num(r['cudnn_fp16_tflops'])} | {ratio} |")
    text = "\n".join(lines) + f"\n\nPublished, not run here: {PUBLISHED_FP8}\n"
    (out / "attention_vs_sdpa_fp8.md").write_text(text)
    print(text)


def candidates(out: Path) -> None:
    """CANDIDATE_TILES in both rescale modes on CANDIDATE_ROWS, each beside SDPA flash, with the
    registers and spills ptxas reports (check() is bypassed: spilling tiles are timed too)."""
    def configs(dim: int) -> list[dict[str, Any]]:
        return [{"block_m": m, "block_n": n, "warps": warps, "stages": stages, "precision": "fast_exp2",
                 "rescale": rescale, "occupancy": occupancy}
                for (m, n, warps, stages, occupancy), rescale in itertools.product(CANDIDATE_TILES[dim],
                                                                                   ("always", "lazy"))]

    problems = [_problem(*row) for row in CANDIDATE_ROWS]
    compile_all([(config, problem) for problem in problems for config in configs(problem["D"])])
    rows = []
    for problem in problems:
        inputs = SPEC.make_inputs(problem, np.random.default_rng(0))
        ref = SPEC.reference(inputs, problem)
        flash_s = time_sdpa(SDPA["flash"], problem, inputs, ref)[0]
        for config in configs(problem["D"]):
            resources = get_backend("cuda").compile(SPEC.render(config, problem), TARGET).resources
            seconds, rel_l2 = time_tuned(config, problem, inputs, ref)
            rows.append({"problem": problem, "config": config, "us": seconds * 1e6, "rel_l2": rel_l2,
                         "x_flash": flash_s / seconds, "registers": resources.get("registers"),
                         "spill_bytes": resources.get("spill_store_bytes")})
            print(*problem.values(), list(config.values()), f"{seconds * 1e6:8.1f} us  x flash "
                  f"{flash_s / seconds:.3f}  regs {resources.get('registers')} spill "
                  f"{resources.get('spill_store_bytes')}  rel L2 {rel_l2:.2e}", flush=True)
    (out / "attention_vs_sdpa.candidates.json").write_text(json.dumps({**header(), "rows": rows}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="the mma_sync family's tuning database (URL)")
    parser.add_argument("--hopper-db", help="the wgmma family's tuning database (URL; without it, mma_sync alone)")
    parser.add_argument("--family", choices=tuple(FAMILIES), help="--profile: this family's best, not the chosen one")
    parser.add_argument("--out", default="bench/results", type=Path)
    parser.add_argument("--tune-for", type=float, default=1e9, help="start no new study after this many seconds")
    parser.add_argument("--tune-only", action="store_true", help="tune the missing shapes, measure nothing")
    parser.add_argument("--candidates", action="store_true", help="time CANDIDATE_TILES on CANDIDATE_ROWS, then stop")
    parser.add_argument("--profile", metavar="B,H,S,D,CAUSAL,DTYPE", help="launch one stored config (for ncu)")
    parser.add_argument("--fp8", action="store_true", help="the FP8 rows alone (see above; needs --hopper-db)")
    args = parser.parse_args()
    dbs = {"mma_sync": args.db} | ({HOPPER: args.hopper_db} if args.hopper_db else {})
    if args.profile:
        return profile(args.profile, dbs, args.family)
    if args.candidates:
        return candidates(args.out)
    deadline = time.monotonic() + args.tune_for
    if args.fp8:
        if not args.hopper_db:
            raise SystemExit("--fp8 tunes and times the wgmma family: give its database with --hopper-db")
        return fp8_rows(args.hopper_db, deadline, args.out)
    # The Hopper family first: the mma_sync rows are tuned in the committed database already.
    answers = {family: best_configs(dbs[family], family, deadline) for family in sorted(dbs, key=lambda f: f != HOPPER)}
    for family, found in answers.items():
        print(f"{family}: {len(found)} of {len(seed_shapes())} seed shapes have a config", flush=True)
    if not args.tune_only and any(answers.values()):
        benchmark(answers, args.out)


if __name__ == "__main__":
    main()
