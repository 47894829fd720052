"""tuner.runtime.gemm on a real GPU (run by bench/runtime_overhead.sh on the device).

Answers come from the committed tuning database of the Hopper GEMM (bench/results/gemm_tuned.db.gz,
arch sm_90a): results within the template's stored bound for exact and nearest problems, both
layouts, eager, under torch.compile and replayed in a CUDA graph; an operand TMA cannot read
falls back to torch.matmul.
"""

from __future__ import annotations

import pytest

from tests.committed import committed_database
from tests.conftest import require

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
F = torch.nn.functional
import tuner.runtime  # noqa: E402 (after torch's check)
from tuner.kernel_templates import find_spec  # noqa: E402


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    require(torch.cuda.is_available(), "no CUDA GPU here: run bench/runtime_overhead.sh on a GPU machine")
    tuner.runtime.configure(db=committed_database("gemm_tuned", tmp_path_factory.mktemp("db")))
    return tuner.runtime


def rel_l2(out, ref) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm())


def bound(decision) -> float:
    return find_spec("gemm", decision.arch).max_error(decision.choice.config, decision.problem)


@pytest.mark.parametrize("m, n, k, dtype, layout", [
    (2048, 2048, 2048, torch.float16, "nn"),   # tuned
    (4096, 4096, 4096, torch.bfloat16, "nt"),  # tuned
    (1024, 3072, 1024, torch.bfloat16, "nt"),  # the nearest tuned problem's config
])
def test_gemm_is_within_the_stored_bound(rt, m, n, k, dtype, layout):
    a = torch.randn(m, k, device="cuda").to(dtype)
    b = torch.randn(k, n, device="cuda").to(dtype) if layout == "nn" else torch.randn(n, k, device="cuda").to(dtype).T
    out = rt.gemm(a, b)
    decision = rt.decisions()[-1]
    assert decision.choice is not None, decision.reason
    assert decision.problem["layout"] == layout
    assert out.shape == (m, n) and out.dtype == dtype
    assert rel_l2(out, a.float() @ b.float()) <= bound(decision)


class Mlp(torch.nn.Module):
    """Two linear layers by the runtime's GEMM (x @ W.T: layout nt)."""

    def __init__(self, width: int):
        super().__init__()
        self.up, self.down = (torch.nn.Linear(width, width, bias=False) for _ in range(2))

    def forward(self, x):
        return tuner.runtime.gemm(F.relu(tuner.runtime.gemm(x, self.up.weight.T)), self.down.weight.T)


@pytest.mark.parametrize("mode", ["eager", "compile", "cuda-graph"])
def test_a_model_with_runtime_gemm_matches_linear_layers(rt, mode):
    torch.manual_seed(0)
    model = Mlp(4096).cuda().bfloat16().eval()
    x = torch.randn(4096, 4096, device="cuda").bfloat16()
    with torch.no_grad():
        hidden = F.relu(x.float() @ model.up.weight.float().T)
        expected = hidden @ model.down.weight.float().T
        if mode == "eager":
            out = model(x)
        elif mode == "compile":
            out = torch.compile(model, fullgraph=True)(x)
        else:
            static = x.clone()
            model(static)  # warm-up off the capture: plans made, kernels loaded
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = model(static)
            static.copy_(x)
            graph.replay()
            torch.cuda.synchronize()
            out = static_out.clone()
    chosen = [d for d in rt.decisions() if d.problem.get("M") == 4096 and d.problem.get("layout") == "nt"]
    assert chosen and all(d.choice is not None for d in chosen), [d.reason for d in chosen]
    assert rel_l2(out, expected) <= 2 * bound(chosen[0])  # two GEMMs, each within its bound


def test_an_operand_tma_cannot_read_runs_matmul(rt):
    storage = torch.randn(2048 * 2048 + 1, device="cuda").half()
    a = storage[1:].view(2048, 2048)  # rows of 4096 bytes, but an address 2 bytes off: TMA refuses it
    b = torch.randn(2048, 2048, device="cuda").half()
    assert torch.equal(rt.gemm(a, b), torch.matmul(a, b))
