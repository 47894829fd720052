"""Why the odd GEMM rows (3000^3, 1000x5000x3000) run at 0.55-0.66x cuBLAS while 4096^3 runs at
0.95-1.0x with the same tiles: a few tiles timed beside cuBLAS on shapes that separate the causes.

- 3000 against 3008 (= 47 x 64): the same tile counts, but a 3008-element fp16 row is 6016 bytes,
  a multiple of 128, so every TMA box row starts on a 128-byte line; a 3000-element row does not.
- 3008 against 3072: the ragged last tiles (TMA zero-fill, clipped stores) against none.
- (3000, 3072, 3072), (3072, 3000, 3072), (3072, 3072, 3000): one operand's rows unaligned at a time
  (A's rows are K long; B's and C's are N long).
- 1000x5000x3000 against 1008x5008x3008 and 1024x5120x3072: the same for the second odd row.
- 128x192 tiles (alone and stream-K) beside 128x256: 3000 is 15.6 tiles of 192 and 11.7 of 256, so
  a 128x192 grid fills its last wave on 132 SMs (384 tiles: 2.9 waves) where 128x256 does not (288: 2.2).

Each tile and cuBLAS are timed in alternating rounds (gemm_vs_cublas.interleaved_s: L2 flushed and
output poisoned before every run); every output is checked against the fp32 product.
    python3 -P bench/gemm_odd_sizes.py --out DIR      (gemm_odd_sizes.{json,md})
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))
from bench.attention_vs_sdpa import header  # noqa: E402
from bench.gemm_vs_cublas import (  # noqa: E402
    BACKEND,
    REFERENCE_CONFIG,
    SPEC,
    TARGET,
    bound,
    cublas_launch,
    interleaved_s,
    launched_error,
    output,
    tuned_launch,
)

SHAPES = [(3000, 3000, 3000), (3008, 3008, 3008), (3072, 3072, 3072), (3000, 3072, 3072), (3072, 3000, 3072),
          (3072, 3072, 3000), (1000, 5000, 3000), (1008, 5008, 3008), (1024, 5120, 3072)]
# The odd rows' fp16 winner (128x256, two consumers), 128x128 with one consumer, and 256x128.
BASE = REFERENCE_CONFIG | {"cluster": 1, "persistent": False, "epilogue": "tma_half"}
CONFIGS = {"128x256": BASE, "128x256 c2": BASE | {"cluster": 2},
           "128x192": BASE | {"block_n": 192, "epilogue": "tma"},
           "128x192 sk": BASE | {"block_n": 192, "epilogue": "tma", "persistent": True, "stream_k": True},
           "128x128": BASE | {"block_n": 128, "consumers": 1, "stages": 6, "epilogue": "tma"},
           "256x128": BASE | {"block_m": 256, "block_n": 128, "stages": 4}}


def measure(shape: tuple[int, int, int], dtype: str) -> dict[str, Any]:
    m, n, k = shape
    problem = SPEC.validate_problem({"M": m, "N": n, "K": k, "layout": "nn", "dtype": dtype})
    inputs = SPEC.make_inputs(problem, np.random.default_rng(m + n + k))
    ref = SPEC.reference(inputs, problem)
    out = output(problem)
    device = BACKEND.device(TARGET)
    names = [name for name, config in CONFIGS.items() if SPEC.check(config, problem, device) is None]
    launches = [tuned_launch(CONFIGS[name], problem, inputs, out) for name in names]
    launches.append(cublas_launch(problem, inputs, out))
    seconds = interleaved_s(launches, out)
    errors = [launched_error(launch, out, ref) for launch in launches]
    flops = SPEC.flops(problem)
    row = {"M": m, "N": n, "K": k, "dtype": dtype, "cublas_tflops": flops / seconds[-1] / 1e12,
           "kernels": {name: {"tflops": flops / s / 1e12, "ratio": seconds[-1] / s, "rel_err": e,
                              "within_bound": e <= bound(problem)}
                       for name, s, e in zip(names, seconds, errors, strict=False)}}
    print(f"{m}x{n}x{k} {dtype}: cuBLAS {row['cublas_tflops']:.0f}; " + ", ".join(
        f"{name} {r['tflops']:.0f} ({r['ratio']:.3f}x)" for name, r in row["kernels"].items()), flush=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    names = list(CONFIGS)
    lines = ["| M | N | K | dtype | cuBLAS | " + " | ".join(names) + " |", "|" + "---|" * (5 + len(names))]
    for r in rows:
        cells = [f"{r['kernels'][n]['tflops']:.0f} ({r['kernels'][n]['ratio']:.2f}x)" if n in r["kernels"] else "-"
                 for n in names]
        lines.append(f"| {r['M']} | {r['N']} | {r['K']} | {r['dtype']} | {r['cublas_tflops']:.0f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nTFLOP/s (x cuBLAS), tiles: " + "; ".join(
        f"{name} = {json.dumps(c)}" for name, c in CONFIGS.items()) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--dtypes", default="fp16,bf16")
    args = parser.parse_args()
    rows = [measure(shape, dtype) for dtype in args.dtypes.split(",") for shape in SHAPES]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gemm_odd_sizes.json").write_text(json.dumps({**header(), "rows": rows}, indent=1) + "\n")
    text = table(rows)
    (args.out / "gemm_odd_sizes.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
