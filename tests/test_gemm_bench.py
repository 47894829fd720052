"""bench/gemm_vs_cublas.py on the CPU: its rows (16-bit and FP8), their tuning order, and the FP8
anchor (torch._scaled_mm, which runs on the CPU too) on the template's own quantized inputs."""

from __future__ import annotations

import torch

from bench import gemm_vs_cublas as bench
from tuner.kernel_templates.gemm_cuda import quantize_e4m3


def test_rows_add_fp8_at_the_shapes_scaled_mm_takes() -> None:
    rows = bench.rows()
    fp8 = [r for r in rows if r["dtype"] == "e4m3"]
    assert len(rows) == 22 + 9 and len(fp8) == 9
    assert all(r["layout"] == "nt" and r["out_dtype"] == "bf16" and r["K"] % 16 == r["N"] % 16 == 0 for r in fp8)
    assert {(r["M"], r["N"], r["K"]) for r in fp8} == {(m, n, k) for m, n, k, _ in bench.SQUARES + bench.PROJECTIONS}
    for problem in fp8:
        configs = bench.admitted(problem)
        assert bench.FP8_REFERENCE_CONFIG in configs and all(c["precision"] == "e4m3" for c in configs)
        assert bench.mma_mnemonic(problem) == "QGMMA" and bench.bound(problem) == 0.05
    assert bench._label(fp8[0]) == "2048x2048x2048 nt e4m3->bf16"
    order = bench.tuning_order(rows)
    assert sorted(order) == list(range(len(rows)))
    # the default problem's shape (4096^3 nn) first, in each 16-bit dtype; FP8 (nt) rows among the others
    assert [(rows[i]["dtype"], rows[i]["layout"], rows[i]["M"]) for i in order[:2]] == [("fp16", "nn", 4096),
                                                                                         ("bf16", "nn", 4096)]


def test_the_fp8_anchor_multiplies_the_quantized_inputs_with_their_scales() -> None:
    generator = torch.Generator().manual_seed(0)
    a, w = torch.randn(64, 128, generator=generator), torch.randn(32, 128, generator=generator)
    (a8, a_scale), (w8, w_scale) = quantize_e4m3(a, 128), quantize_e4m3(w, 128)
    problem = bench.SPEC.validate_problem({"M": 64, "N": 32, "K": 128, "layout": "nt", "dtype": "e4m3",
                                           "out_dtype": "bf16"})
    out = torch.empty(64, 32, dtype=torch.bfloat16)
    bench.cublas_launch(problem, {"a": a8, "b": w8, "a_scale": a_scale, "b_scale": w_scale}, out)()
    dequantized = (a8.float() * a_scale) @ (w8.float() * w_scale).T
    assert float((out.float() - dequantized).norm() / dequantized.norm()) < 4e-3  # bf16's rounding
    assert 0.02 < float((out.float() - a @ w.T).norm() / (a @ w.T).norm()) < 0.05  # what FP8 costs
