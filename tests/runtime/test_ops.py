"""The runtime's kernels as torch custom operators: schema, fake implementations, tracing."""

from __future__ import annotations

import pytest
from torch._subclasses.fake_tensor import FakeTensorMode

from tests.runtime.helpers import SMALL, SOFTMAX, fill_attention, fill_softmax, qkv, torch
from tuner import runtime as rt
from tuner.db import Store

SOFTMAX_PROBLEM = {"rows": 8, "cols": 32}


@pytest.fixture
def runtime(tmp_path) -> rt.Runtime:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        fill_attention(store)
        fill_softmax(store, SOFTMAX_PROBLEM)
    return rt.configure(db=url)


def test_attention_op_passes_opcheck_tuned_and_fallen_back(runtime):
    q, k, v = qkv(SMALL)
    torch.library.opcheck(torch.ops.tuner.attention.default, (q, k, v, True, None))
    torch.library.opcheck(torch.ops.tuner.attention.default, (q, k, v, False, None))  # SDPA
    assert [d.choice is not None for d in rt.decisions()] == [True, False]


def test_kernel_op_passes_opcheck(runtime):
    x = torch.randn(SOFTMAX_PROBLEM["rows"], SOFTMAX_PROBLEM["cols"])
    problem = '{"cols":32,"rows":8}'
    torch.library.opcheck(torch.ops.tuner.kernel.default, (SOFTMAX, problem, [x], None))


def test_fake_implementations_give_shape_and_dtype_without_running(runtime):
    with FakeTensorMode():
        q = torch.empty(2, 3, 40, 32, dtype=torch.float16)
        out = rt.attention(q, q, q, causal=True)
        assert out.shape == q.shape and out.dtype == q.dtype
        x = torch.empty(8, 32)
        y = rt.kernel(SOFTMAX)(x, **SOFTMAX_PROBLEM)
        assert y.shape == (8, 32) and y.dtype == torch.float32
    meta = torch.empty(1, 2, 16, 8, device="meta")
    assert rt.attention(meta, meta, meta).device.type == "meta"
    assert rt.decisions() == []  # nothing was looked up, compiled or launched


class Block(torch.nn.Module):
    """Attention over a projection of the input, as a transformer block does."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.out = torch.nn.Linear(dim, dim)

    def forward(self, x, attend):
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        y = attend(q, k, v)  # non-contiguous views: the runtime makes them contiguous
        return x + self.out(y.transpose(1, 2).reshape(batch, length, dim))


def test_torch_compile_traces_one_attention_node_without_graph_breaks(runtime):
    block = Block(64, SMALL["H"]).eval()
    x = torch.randn(SMALL["B"], SMALL["S"], 64)
    attend = lambda q, k, v: rt.attention(q, k, v, causal=True)  # noqa: E731
    sdpa = lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
    targets = []

    def backend(graph, example_inputs):
        targets.extend(node.target for node in graph.graph.nodes)
        return graph.forward

    with torch.no_grad():
        eager = block(x, attend)
        compiled = torch.compile(block, backend=backend, fullgraph=True)(x, attend)
        aot = torch.compile(block, backend="aot_eager", fullgraph=True)(x, attend)
        expected = block(x, sdpa)
    assert targets.count(torch.ops.tuner.attention.default) + targets.count(torch.ops.tuner.attention) == 1
    assert torch.equal(compiled, eager) and torch.equal(aot, eager)
    assert (eager - expected).abs().max() < 1e-3
    assert [d.choice.config["exp"] for d in rt.decisions()] == ["poly3"]
