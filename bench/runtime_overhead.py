"""What tuner.runtime costs per call on the GPU, and what it gives a transformer block.

Launch overhead, per shape (a small one where overhead matters, and the headline one):
  driver   the same cubin by cuLaunchKernel alone, its arguments packed once: the floor
  direct   the same cubin through the runtime's launch seam (tensors in, their addresses
           written into the packed arguments), inputs and output prepared once
  direct+alloc  the same with a fresh output tensor each call (what any functional op pays)
  worker   the same cubin through the measuring worker's launcher (cuLaunchKernelEx; arguments packed once)
  runtime  ``tuner.runtime.attention(q, k, v, causal)``, eager: plan lookup, output, launch
  op       ``torch.ops.tuner.attention``: the same through torch's dispatcher (what compiled
           graphs call)
  sdpa     ``F.scaled_dot_product_attention``, PyTorch's choice of backend
Each is timed two ways: the host time to enqueue a burst of calls (no synchronization inside
the burst, fewer calls than the launch queue holds), which is the per-call overhead, and the
time per call of the burst until the GPU has finished it. Medians of repeated bursts.

End to end: the forward of a pre-norm transformer block (LayerNorm, QKV projection, causal
attention, output projection, MLP) with SDPA or the runtime op, eager and under torch.compile,
the time per forward over back-to-back forwards until the GPU has finished them.

    bench/runtime_overhead.sh      (unpacks the tuning database, runs this and the GPU tests)
    python3 -P bench/runtime_overhead.py --db sqlite:///attention_tuned.db --out DIR
Writes DIR/runtime_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import tuner.runtime as rt
from tuner.db import Store
from tuner.kernel_templates import Target, kernel_spec
from tuner.runtime.launch import load
from tuner.workers import backend_for
from tuner.workers.cuda_launch import launcher
from tuner.workers.cuda_runtime import environment

SHAPES = {"small": (1, 8, 128, 64, True), "headline": (16, 96, 512, 64, False)}  # B, H, S, D, causal
BLOCKS = {"small": (1, 128), "headline": (16, 512)}  # batch, length; width 512, 8 heads of 64
WIDTH, HEADS = 512, 8
BURST, BURSTS = 200, 50
MAX_ERROR = 1e-3
VARIANTS = ("driver", "direct", "direct+alloc", "worker", "runtime", "op", "sdpa")


def burst(call: Callable[[], Any], n: int = BURST, bursts: int = BURSTS) -> dict[str, float]:
    """Median host µs per call to enqueue ``n`` calls, and µs per call until the GPU is done."""
    for _ in range(20):
        call()
    torch.cuda.synchronize()
    host, total = [], []
    for _ in range(bursts):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            call()
        enqueued = time.perf_counter()
        torch.cuda.synchronize()
        done = time.perf_counter()
        host.append((enqueued - start) / n * 1e6)
        total.append((done - start) / n * 1e6)
    return {"host_us": statistics.median(host), "host_us_q1": _quantile(host, 0.25),
            "host_us_q3": _quantile(host, 0.75), "wall_us": statistics.median(total)}


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1]


def launch_overhead(name: str) -> dict[str, Any]:
    batch, heads, length, dim, causal = SHAPES[name]
    q, k, v = (torch.randn(batch, heads, length, dim, device="cuda", dtype=torch.float16)
               for _ in range(3))
    with torch.no_grad():
        ours = rt.attention(q, k, v, causal, max_error=MAX_ERROR)  # the plan is made here
    decision = rt.decisions()[-1]
    if decision.choice is None:
        raise SystemExit(f"no tuned config for {name}: {decision.reason}")
    spec = kernel_spec("attention", decision.arch)  # the config names its family
    target = Target.documented(decision.arch)
    source = spec.render(decision.choice.config, decision.problem)
    cubin = backend_for(target).compile(source, target).path
    out = torch.empty_like(q)
    seam = load("cuda", Path(cubin), source, 4, q.device.index)
    buffers = [q, k, v, out]
    stream = torch.cuda.current_stream().cuda_stream
    worker_launch = launcher(cubin, source, {"q": q, "k": k, "v": v}, out)
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
    calls = {
        "driver": driver_launch(seam, buffers, stream),
        "direct": lambda: seam(buffers, stream),
        "direct+alloc": lambda: seam([q, k, v, torch.empty_like(q)], stream),
        "worker": worker_launch,
        "runtime": lambda: rt.attention(q, k, v, causal, max_error=MAX_ERROR),
        "op": lambda: torch.ops.tuner.attention(q, k, v, causal, MAX_ERROR),
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
    }
    with torch.no_grad():
        timings = {label: burst(call) for label, call in calls.items()}
        seam(buffers, stream)
        torch.cuda.synchronize()
    return {"shape": dict(zip("BHSD", (batch, heads, length, dim), strict=True), causal=causal, dtype="fp16"),
            "config": decision.choice.config, "tuned_problem": decision.choice.tuned_problem,
            "exact": decision.choice.exact, "origin": decision.choice.origin,
            "rel_l2_runtime": _rel(ours, reference), "rel_l2_direct": _rel(out, reference),
            "timings": timings,
            "overhead_us": timings["runtime"]["host_us"] - timings["driver"]["host_us"],
            "overhead_op_us": timings["op"]["host_us"] - timings["driver"]["host_us"]}


def driver_launch(seam: Any, buffers: list[torch.Tensor], stream: int) -> Callable[[], None]:
    """The bare driver call on the seam's packed arguments: cuLaunchKernel and nothing else."""
    seam._slots[:] = [b.data_ptr() for b in buffers]
    function, geometry, argv, driver = seam._function, seam._geometry, seam._argv_address, seam._driver
    return lambda: driver.cuLaunchKernel(function, *geometry, stream, argv, 0)


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref).norm() / ref.norm())


class Block(torch.nn.Module):
    def __init__(self, attend: Callable[..., torch.Tensor]):
        super().__init__()
        self.attend = attend
        self.norm1, self.norm2 = torch.nn.LayerNorm(WIDTH), torch.nn.LayerNorm(WIDTH)
        self.qkv, self.proj = torch.nn.Linear(WIDTH, 3 * WIDTH), torch.nn.Linear(WIDTH, WIDTH)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(WIDTH, 4 * WIDTH), torch.nn.GELU(),
                                       torch.nn.Linear(4 * WIDTH, WIDTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, HEADS, width // HEADS).permute(2, 0, 3, 1, 4)
        y = self.attend(q, k, v).transpose(1, 2).reshape(batch, length, width)
        x = x + self.proj(y)
        return x + self.mlp(self.norm2(x))


def _sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _tuned(q, k, v):
    return rt.attention(q, k, v, causal=True, max_error=MAX_ERROR)


def block_forward(name: str) -> dict[str, Any]:
    batch, length = BLOCKS[name]
    x = torch.randn(batch, length, WIDTH, device="cuda", dtype=torch.float16)
    results: dict[str, Any] = {"batch": batch, "length": length, "width": WIDTH, "heads": HEADS}
    outputs = {}
    for attend_name, attend in (("sdpa", _sdpa), ("runtime", _tuned)):
        torch.manual_seed(0)
        block = Block(attend).cuda().half().eval()
        for mode in ("eager", "compile"):
            forward = block if mode == "eager" else torch.compile(block, fullgraph=True)
            with torch.no_grad():
                outputs[attend_name, mode] = forward(x)
                timing = burst(lambda forward=forward: forward(x), n=50, bursts=30)
            results[f"{attend_name}_{mode}_us"] = timing["wall_us"]
            results[f"{attend_name}_{mode}_host_us"] = timing["host_us"]
    results["rel_l2_runtime_vs_sdpa"] = _rel(outputs["runtime", "eager"], outputs["sdpa", "eager"].float())
    results["rel_l2_compiled_vs_eager"] = _rel(outputs["runtime", "compile"], outputs["runtime", "eager"].float())
    return results


def markdown(document: dict[str, Any]) -> str:
    lines = [f"# tuner.runtime overhead on {document['environment'].get('device')}", "",
             f"{document['date']}; torch {document['environment'].get('torch')}, driver "
             f"{document['environment'].get('driver')}; bursts of {BURST} calls, median of {BURSTS}.",
             "", "## Launch overhead per call (µs)", "",
             "| shape | config from | driver | direct | direct+alloc | worker | runtime | op | sdpa "
             "| runtime − driver | op − driver |", "|" + " --- |" * 11]
    for name, row in document["launch"].items():
        t = row["timings"]
        source = "exact" if row["exact"] else f"nearest {row['tuned_problem']}"
        cells = [f"{t[k]['host_us']:.2f} (wall {t[k]['wall_us']:.1f})" for k in VARIANTS]
        lines.append(f"| {name} {row['shape']} | {source} | " + " | ".join(cells)
                     + f" | **{row['overhead_us']:.2f}** | {row['overhead_op_us']:.2f} |")
    lines += ["", "Host time to enqueue one call; in parentheses the time per call until the GPU has "
              "finished the burst.", "", "## Transformer block forward (µs per forward)", "",
              "| block | sdpa eager | runtime eager | sdpa compiled | runtime compiled | rel. L2 runtime vs sdpa |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, row in document["block"].items():
        lines.append(f"| {name} B={row['batch']} S={row['length']} | {row['sdpa_eager_us']:.1f} | "
                     f"{row['runtime_eager_us']:.1f} | {row['sdpa_compile_us']:.1f} | "
                     f"{row['runtime_compile_us']:.1f} | {row['rel_l2_runtime_vs_sdpa']:.2e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="tuning database URL (attention studies for sm_90a)")
    parser.add_argument("--out", default="bench/results", help="folder for runtime_overhead.{json,md}")
    args = parser.parse_args()
    Store.open(args.db, create=False).close()  # at this tuner's schema: the runtime opens it read-only
    rt.configure(db=args.db)
    document = {"date": datetime.now(timezone.utc).isoformat(), "environment": environment(),
                "burst": BURST, "bursts": BURSTS, "max_error": MAX_ERROR,
                "launch": {name: launch_overhead(name) for name in SHAPES},
                "block": {name: block_forward(name) for name in BLOCKS}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtime_overhead.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out / "runtime_overhead.md").write_text(markdown(document))
    print(markdown(document))


if __name__ == "__main__":
    main()
