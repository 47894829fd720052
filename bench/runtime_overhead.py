"""What tuner.runtime costs per call on the GPU, and what it gives a transformer block.

Launch overhead, per case (attention at a small shape, where overhead matters, and at the
headline one; a GEMM), each on the cubin the runtime chose:
  driver   the bare driver call on the launcher's packed arguments and configuration, nothing
           else: ``cuLaunchKernel`` (attention) or ``cuLaunchKernelEx`` (the GEMM, whose
           clusters need it): the floor
  launcher the project's one launcher (``tuner.workers.cuda_launch.Kernel.launch``) on fixed
           buffers and torch's current stream: argument-block lookup, device check, the call
  launcher+alloc  the same with a fresh output tensor each call (what any functional op pays)
  plan out=  the runtime's plan of the shape called on the inputs and a fixed output: its input
           and output checks, the stream query and the launch (no key, no lookup, no allocation)
  runtime  ``tuner.runtime.attention(q, k, v, causal)`` / ``tuner.runtime.gemm(a, b)``, eager:
           plan lookup, output, launch
  runtime out=  the same with ``out=`` a fixed tensor: no allocation
  op       ``torch.ops.tuner.attention`` / ``torch.ops.tuner.gemm``: the same through torch's
           dispatcher (what compiled graphs call)
  op out=  ``torch.ops.tuner.attention_out`` / ``torch.ops.tuner.gemm_out`` into a fixed tensor
  torch    ``F.scaled_dot_product_attention`` / ``torch.matmul``, PyTorch's own
Each is timed two ways: the host time to enqueue a burst of calls (no synchronization inside
the burst, fewer calls than the launch queue holds), which is the per-call overhead, and the
time per call of the burst until the GPU has finished it. Medians of repeated bursts.

End to end: the forward of a pre-norm transformer block (LayerNorm, QKV projection, causal
attention, output projection, MLP) with SDPA or the runtime op, eager and under torch.compile,
the time per forward over back-to-back forwards until the GPU has finished them.

    bench/runtime_overhead.sh      (unpacks the tuning databases, runs this and the GPU tests)
    python3 -P bench/runtime_overhead.py --db sqlite:///attention_tuned.db --gemm-db sqlite:///gemm_tuned.db --out DIR
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
from tuner.workers import backend_for
from tuner.workers.cuda_launch import Kernel
from tuner.workers.cuda_runtime import environment

# name: (kernel, problem); attention B, H, S, D, causal (fp16), gemm M, N, K (fp16, layout nn)
CASES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "attention small": ("attention", (1, 8, 128, 64, True)),
    "attention headline": ("attention", (16, 96, 512, 64, False)),
    "gemm 2048": ("gemm", (2048, 2048, 2048)),
}
BLOCKS = {"small": (1, 128), "headline": (16, 512)}  # batch, length; width 512, 8 heads of 64
WIDTH, HEADS = 512, 8
BURST, BURSTS = 200, 15
MAX_ERROR = 1e-3  # attention's bound; the GEMM takes its template's own (None)
VARIANTS = ("driver", "launcher", "launcher+alloc", "plan out=", "runtime", "runtime out=", "op", "op out=", "torch")


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


def _calls(kernel: str, problem: tuple[Any, ...],
           out: torch.Tensor) -> tuple[list[torch.Tensor], dict[str, Callable[[], Any]], Any]:
    """The inputs of a case, its runtime/op/torch calls (the out= ones into ``out``), and its fp32
    reference."""
    if kernel == "attention":
        batch, heads, length, dim, causal = problem
        q, k, v = (torch.randn(batch, heads, length, dim, device="cuda", dtype=torch.float16) for _ in range(3))
        reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
        return [q, k, v], {
            "runtime": lambda: rt.attention(q, k, v, causal, max_error=MAX_ERROR),
            "runtime out=": lambda: rt.attention(q, k, v, causal, max_error=MAX_ERROR, out=out),
            "op": lambda: torch.ops.tuner.attention(q, k, v, causal, MAX_ERROR),
            "op out=": lambda: torch.ops.tuner.attention_out(q, k, v, out, causal, MAX_ERROR),
            "torch": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)}, reference
    m, n, k_ = problem
    a, b = (torch.randn(rows, cols, device="cuda", dtype=torch.float16) for rows, cols in ((m, k_), (k_, n)))
    return [a, b], {"runtime": lambda: rt.gemm(a, b), "runtime out=": lambda: rt.gemm(a, b, out=out),
                    "op": lambda: torch.ops.tuner.gemm(a, b, None),
                    "op out=": lambda: torch.ops.tuner.gemm_out(a, b, out, None),
                    "torch": lambda: torch.matmul(a, b)}, a.float() @ b.float()


def _output(kernel: str, problem: tuple[Any, ...]) -> torch.Tensor:
    """The output tensor of a case, as the kernel writes it."""
    shape = problem[:4] if kernel == "attention" else (problem[0], problem[1])
    return torch.empty(shape, device="cuda", dtype=torch.float16)


def launch_overhead(name: str, db: str) -> dict[str, Any]:
    kernel, problem = CASES[name]
    runtime = rt.configure(db=db)
    out = _output(kernel, problem)
    inputs, calls, reference = _calls(kernel, problem, out)
    with torch.no_grad():
        ours = calls["runtime"]()  # the plan is made here
    decision = rt.decisions()[-1]
    if decision.choice is None:
        raise SystemExit(f"no tuned config for {name}: {decision.reason}")
    (plan,) = runtime.plans.values()  # this case's one shape
    planned = tuple(inputs)
    spec = kernel_spec(kernel, decision.arch)  # a stored config names its family
    target = Target.documented(decision.arch)
    source = spec.render(decision.choice.config, decision.problem)
    cubin = backend_for(target).compile(source, target).path  # the compile cache's, as the runtime's
    names = ("q", "k", "v", "out") if kernel == "attention" else ("a", "b", "out")
    launcher = Kernel(cubin, source, names, inputs[0].device.index)
    buffers = [*inputs, out]
    stream = torch.cuda.current_stream().cuda_stream
    calls = {"driver": driver_launch(launcher, buffers, stream),
             "launcher": lambda: launcher.launch(buffers, stream),
             "launcher+alloc": lambda: launcher.launch([*inputs, torch.empty_like(out)], stream),
             "plan out=": lambda: plan(planned, out), **calls}
    with torch.no_grad():
        timings = {label: burst(calls[label]) for label in VARIANTS}
        out.zero_()
        calls["runtime out="]()
        rel_out = _rel(out, reference)
        launcher.launch(buffers, stream)
        torch.cuda.synchronize()
    floor = timings["driver"]["host_us"]
    return {"kernel": kernel, "problem": decision.problem, "config": decision.choice.config,
            "tuned_problem": decision.choice.tuned_problem, "exact": decision.choice.exact,
            "origin": decision.choice.origin, "grid": launcher.grid, "cluster": list(source.cluster),
            "tensor_maps": len(source.tensor_maps),
            "rel_l2_runtime": _rel(ours, reference), "rel_l2_out": rel_out, "rel_l2_direct": _rel(out, reference),
            "timings": timings,
            "overhead_us": timings["runtime"]["host_us"] - floor,
            "overhead_op_us": timings["op"]["host_us"] - floor,
            "overhead_out_us": timings["runtime out="]["host_us"] - floor,
            "overhead_op_out_us": timings["op out="]["host_us"] - floor,
            "allocation_us": timings["launcher+alloc"]["host_us"] - timings["launcher"]["host_us"]}


def driver_launch(launcher: Kernel, buffers: list[torch.Tensor], stream: int) -> Callable[[], Any]:
    """The bare driver call on the launcher's packed arguments: nothing else."""
    from cuda.bindings import driver

    function, arguments, source = launcher.function, launcher.arguments(buffers, stream), launcher.source
    if tuple(source.cluster) != (1, 1, 1):
        config = launcher.config(stream)
        return lambda: driver.cuLaunchKernelEx(config, function, arguments, 0)
    geometry = (*launcher.grid, *source.block, source.shared_bytes)
    return lambda: driver.cuLaunchKernel(function, *geometry, stream, arguments, 0)


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
                timing = burst(lambda forward=forward: forward(x), n=50, bursts=10)
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
             "| case | config from | " + " | ".join(VARIANTS)
             + " | runtime − driver | **runtime out= − driver** | op − driver | op out= − driver | allocation |",
             "|" + " --- |" * (len(VARIANTS) + 7)]
    for name, row in document["launch"].items():
        t = row["timings"]
        source = "exact" if row["exact"] else f"nearest {row['tuned_problem']}"
        cells = [f"{t[k]['host_us']:.2f} (wall {t[k]['wall_us']:.1f})" for k in VARIANTS]
        lines.append(f"| {name} {row['problem']} | {source} | " + " | ".join(cells)
                     + f" | {row['overhead_us']:.2f} | **{row['overhead_out_us']:.2f}** | {row['overhead_op_us']:.2f} "
                     f"| {row['overhead_op_out_us']:.2f} | {row['allocation_us']:.2f} |")
    lines += ["", "Host time to enqueue one call; in parentheses the time per call until the GPU has "
              "finished the burst. allocation: launcher+alloc − launcher (a fresh output and the free of "
              "the last). plan out= − launcher: the runtime's per-call checks and stream query; runtime out= − "
              "plan out=: the call's own checks, its key and the plan lookup.", "",
              "## Transformer block forward (µs per forward)", "",
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
    parser.add_argument("--gemm-db", required=True, help="tuning database URL (GEMM studies for sm_90a)")
    parser.add_argument("--out", default="bench/results", help="folder for runtime_overhead.{json,md}")
    args = parser.parse_args()
    for url in (args.db, args.gemm_db):
        Store.open(url, create=False).close()  # at this tuner's schema: the runtime opens it read-only
    launch = {name: launch_overhead(name, args.gemm_db if CASES[name][0] == "gemm" else args.db)
              for name in CASES}
    rt.configure(db=args.db)
    document = {"date": datetime.now(timezone.utc).isoformat(), "environment": environment(),
                "burst": BURST, "bursts": BURSTS, "max_error": MAX_ERROR, "launch": launch, "block": {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (None, *BLOCKS):  # written after the launch rows, then after each block
        if name is not None:
            document["block"][name] = block_forward(name)
        (out / "runtime_overhead.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
        (out / "runtime_overhead.md").write_text(markdown(document))
    print(markdown(document))


if __name__ == "__main__":
    main()
