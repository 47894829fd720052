"""bench/gemm_vs_cublas.py on the CPU: its rows (16-bit and FP8), their tuning order, the FP8
anchor (torch._scaled_mm, which runs on the CPU too) on the template's own quantized inputs, and
the odd rows' stream-K report."""

from __future__ import annotations

import json

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


def test_odd_rows_and_their_stream_k_report(monkeypatch, tmp_path) -> None:
    odd = [i for i, p in enumerate(bench.rows()) if bench.selects("odd", p)]
    assert [(bench.rows()[i]["M"], bench.rows()[i]["dtype"]) for i in odd] == [
        (3000, "fp16"), (1000, "fp16"), (3000, "bf16"), (1000, "bf16")]
    winner = bench.REFERENCE_CONFIG | {"epilogue": "tma_half"}  # cluster 2: its stream-K form takes cluster 1
    for i in odd:
        candidates = bench.stream_k_candidates(bench.rows()[i], winner)
        assert candidates[0] == winner | {"cluster": 1, "stream_k": True} and len(candidates) == 6
        assert all(c["stream_k"] and c["cluster"] == 1 for c in candidates)
    # the report's plumbing, its kernels timed by stand-ins (the GPU's part runs in bench/gemm_streamk.sh)
    for name, stand_in in (("tuned_launch", lambda *a: (lambda: None)), ("cublas_launch", lambda *a: (lambda: None)),
                           ("output", lambda problem: None), ("header", dict),
                           ("median_s_round", lambda launch, out: 1e-3),
                           ("interleaved_s", lambda launches, out: [1e-3 * (n + 1) for n in range(len(launches))]),
                           ("launched_error", lambda launch, out, ref: 1e-4)):
        monkeypatch.setattr(bench, name, stand_in)
    monkeypatch.setattr(bench.SPEC, "make_inputs", lambda problem, rng: {})
    monkeypatch.setattr(bench.SPEC, "reference", lambda inputs, problem: None)
    bench.stream_k_report({odd[0]: winner}, {odd[0]: winner, odd[1]: winner}, tmp_path)
    report = json.loads((tmp_path / "gemm_streamk.json").read_text())
    first, second = report["rows"]
    assert list(first["kernels"]) == ["data-parallel", "tuned", "stream-K"]
    # no winner stored before: no data-parallel one
    assert list(second["kernels"]) == ["tuned", "stream-K"] and second["kernels"]["stream-K"]["config"]["stream_k"]
    assert first["kernels"]["data-parallel"]["ratio"] == 4.0 and first["cublas_tflops"] == 2 * 3000**3 / 4e-3 / 1e12
    assert "| 3000 | 3000 | 3000 | fp16 | stream-K | 128,256,64,4,2,cooperative,1,True,m,tma_half,1,native,True |" in (
        tmp_path / "gemm_streamk.md").read_text()
