"""Where FP8 attention's error comes from, and whether a random rotation of Q and K lowers it.

    python bench/fp8_error_sources.py [--out bench/results/fp8_error_sources.md]

On the CPU, in fp32: attention with each of Q and K, V, and P rounded to e4m3 the way the Hopper
family's e4m3 configs round them (per-tensor scales amax/448 for Q, K and V; P unscaled in [0, 1]),
then all of them, then all of them with Q and K first multiplied by one random orthogonal matrix
(FA3's incoherent processing: Q·Kᵀ unchanged, outlier channels spread over all of them). Relative
L2 against the fp32 result, for Gaussian inputs (the GPU tests' and benchmarks' inputs) and for
inputs whose Q and K carry a few outlier channels 20x larger (as LLM activations do).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

SHAPE = (1, 4, 1024, 128)  # B, H, S, D


def e4m3(x: torch.Tensor) -> torch.Tensor:
    scale = x.abs().amax() / 448
    return (x / scale).to(torch.float8_e4m3fn).float() * scale


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, round_p: bool = False) -> torch.Tensor:
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    p = torch.exp(scores - scores.amax(-1, keepdim=True))
    total = p.sum(-1, keepdim=True)
    if round_p:
        p = p.to(torch.float8_e4m3fn).float()
    return p @ v / total


def errors(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rotation: torch.Tensor) -> dict[str, float]:
    exact = attention(q, k, v)

    def rel(o: torch.Tensor) -> float:
        return ((o - exact).norm() / exact.norm()).item()

    return {"Q and K": rel(attention(e4m3(q), e4m3(k), v)), "V": rel(attention(q, k, e4m3(v))),
            "P": rel(attention(q, k, v, round_p=True)),
            "all": rel(attention(e4m3(q), e4m3(k), e4m3(v), round_p=True)),
            "all, Q and K rotated": rel(attention(e4m3(q @ rotation), e4m3(k @ rotation), e4m3(v), round_p=True))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/fp8_error_sources.md"))
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(SHAPE, generator=generator) for _ in range(3))
    rotation = torch.linalg.qr(torch.randn(SHAPE[-1], SHAPE[-1], generator=generator))[0]
    outliers = torch.ones(SHAPE[-1])
    outliers[torch.randperm(SHAPE[-1], generator=generator)[:4]] = 20.0
    rows = {"Gaussian": errors(q, k, v, rotation), "4 outlier channels (20x) in Q and K":
            errors(q * outliers, k * outliers, v, rotation)}
    columns = list(next(iter(rows.values())))
    lines = [f"# FP8 attention's error by source (bench/fp8_error_sources.py; B,H,S,D = {SHAPE}, CPU, fp32)", "",
             "Relative L2 against fp32 attention with the named tensors rounded to e4m3.", "",
             "| inputs | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{row[c]:.2e}" for c in columns) + " |" for name, row in rows.items()]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
