"""out=: the runtime's kernels writing into a tensor of the caller's (no allocation on the call),
tuned and fallen back, eager, through the custom operators and under torch.compile."""

from __future__ import annotations

import pytest

from tests.runtime.helpers import SMALL, qkv, reference, rel_l2, torch
from tuner import runtime as rt


@pytest.mark.parametrize("causal, tuned", [(True, True), (False, False)])  # causal=False: nothing stored
def test_attention_writes_into_out_and_returns_it(runtime, causal, tuned):
    q, k, v = qkv(SMALL)
    out = torch.full_like(q, float("nan"))
    got = rt.attention(q, k, v, causal=causal, out=out)
    assert got is out and rel_l2(out, reference(q, k, v, causal)) < 1e-3
    assert (rt.decisions()[-1].choice is not None) == tuned
    again = torch.full_like(q, float("nan"))
    assert rt.attention(q, k, v, causal=causal, out=again) is again and torch.equal(again, out)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("wrong", ["shape", "dtype", "strided"])
def test_an_out_the_kernel_cannot_write_is_refused_with_what_it_must_be(runtime, causal, wrong):
    q, k, v = qkv(SMALL)
    out = {"shape": torch.empty(1, 2, 64, 16), "dtype": torch.empty_like(q, dtype=torch.float64),
           "strided": torch.empty_like(q).transpose(2, 3).contiguous().transpose(2, 3)}[wrong]
    with pytest.raises(ValueError, match=r"out= must be a contiguous \(1, 2, 64, 32\) float32 tensor"):
        rt.attention(q, k, v, causal=causal, out=out)


def test_the_out_operator_passes_opcheck_tuned_and_fallen_back(runtime):
    q, k, v = qkv(SMALL)
    for causal in (True, False):
        torch.library.opcheck(torch.ops.tuner.attention_out.default, (q, k, v, torch.empty_like(q), causal, None))
    assert [d.choice is not None for d in rt.decisions()] == [True, False]


def test_out_under_torch_compile_writes_the_callers_tensor(runtime):
    q, k, v = qkv(SMALL)

    def attend(q, k, v, out):
        rt.attention(q, k, v, causal=True, out=out)
        return out * 2

    expected = 2 * rt.attention(q, k, v, causal=True)
    for backend in ("aot_eager", "inductor"):
        out = torch.empty_like(q)
        with torch.no_grad():
            doubled = torch.compile(attend, backend=backend, fullgraph=True)(q, k, v, out)
        assert torch.equal(doubled, expected) and torch.equal(out * 2, expected), backend


def test_gemm_writes_its_fallback_into_out_and_its_operator_passes_opcheck(runtime):
    a, b = torch.randn(8, 16), torch.randn(16, 4)  # no GEMM template on the CPU: torch.matmul
    out = torch.empty(8, 4)
    with pytest.warns(rt.FallbackWarning):
        assert rt.gemm(a, b, out=out) is out
    assert torch.equal(out, a @ b)
    torch.library.opcheck(torch.ops.tuner.gemm_out.default, (a, b, torch.empty(8, 4), None))
    with pytest.raises(ValueError, match=r"out= must be a contiguous \(8, 4\) float32"):
        rt.gemm(a, b, out=torch.empty(4, 8))
