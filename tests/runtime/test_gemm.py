"""tuner.runtime.gemm on the CPU: the problem a call asks for, the lookup in the committed tuning
database of the Hopper GEMM, the stated fallback (torch.matmul) and the custom operator."""

from __future__ import annotations

import warnings

import pytest

from tests.committed import committed_database
from tests.runtime.helpers import torch
from tuner import runtime as rt
from tuner.kernel_templates import Target, find_spec
from tuner.runtime.gemm import layout, problem_of
from tuner.runtime.runtime import misfit

F16 = torch.float16


@pytest.fixture
def runtime(tmp_path) -> rt.Runtime:
    return rt.configure(db=f"sqlite:///{tmp_path / 'empty.db'}")


@pytest.fixture(scope="module")
def tuned_gemm(tmp_path_factory) -> rt.DatabaseAnswers:
    return rt.DatabaseAnswers(committed_database("gemm_tuned", tmp_path_factory.mktemp("db")))


def test_the_layout_is_how_b_is_stored():
    w = torch.empty(48, 32, dtype=F16)
    assert layout(w) == "nn" and layout(w.T) == "nt"
    assert layout(torch.empty(8, 64, dtype=F16)[:, ::2]) is None


def test_the_problem_of_a_call():
    a, b, w = torch.empty(64, 32, dtype=F16), torch.empty(32, 48, dtype=F16), torch.empty(48, 32, dtype=F16)
    assert problem_of(a, b) == {"M": 64, "N": 48, "K": 32, "dtype": "fp16", "layout": "nn"}
    assert problem_of(a, w.T)["layout"] == "nt"
    padded = torch.empty(64, 40, dtype=torch.bfloat16)[:, :32]  # rows padded to 80 bytes: TMA reads them
    assert problem_of(padded, b.bfloat16())["dtype"] == "bf16"


@pytest.mark.parametrize("a, b, message", [
    (torch.empty(64, 30, dtype=F16), torch.empty(30, 48, dtype=F16), "multiple of 16 bytes"),
    (torch.empty(64, 32), torch.empty(32, 48), "fp16 or bf16"),
    (torch.empty(64, 32, dtype=F16), torch.empty(32, 48, dtype=torch.bfloat16), "one dtype"),
    (torch.empty(2, 64, 32, dtype=F16), torch.empty(32, 48, dtype=F16), r"a \[M, K\] and b \[K, N\]"),
])
def test_calls_the_template_cannot_take_say_why(a, b, message):
    with pytest.raises(rt.NoAnswer, match=message):
        problem_of(a, b)


def test_cpu_tensors_run_matmul_and_say_why(runtime):
    a, b = torch.randn(64, 32, dtype=F16), torch.randn(32, 48, dtype=F16)
    with pytest.warns(rt.FallbackWarning, match="torch.matmul"):
        out = rt.gemm(a, b)
    assert torch.equal(out, a @ b)
    (decision,) = rt.decisions()
    assert decision.choice is None and "gemm" in decision.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per shape
        assert torch.equal(rt.gemm(a, b), a @ b)


def test_inputs_that_need_gradients_get_them_from_matmul(runtime):
    a = torch.randn(16, 8, requires_grad=True)
    b = torch.randn(8, 4)
    rt.gemm(a, b).sum().backward()
    assert torch.allclose(a.grad, b.sum(1).expand(16, 8))
    assert rt.decisions() == []


def test_the_gemm_op_passes_opcheck_and_traces_as_one_node(runtime):
    a, b = torch.randn(64, 32, dtype=F16), torch.randn(48, 32, dtype=F16).T
    torch.library.opcheck(torch.ops.tuner.gemm.default, (a, b, None))
    targets = []

    def backend(graph, example_inputs):
        targets.extend(node.target for node in graph.graph.nodes)
        return graph.forward

    with torch.no_grad():
        compiled = torch.compile(lambda x, y: rt.gemm(x, y) + 1, backend=backend, fullgraph=True)(a, b)
    assert targets.count(torch.ops.tuner.gemm.default) + targets.count(torch.ops.tuner.gemm) == 1
    assert torch.equal(compiled, a @ b + 1)


@pytest.mark.parametrize("problem, exact", [
    ({"M": 2048, "N": 2048, "K": 2048, "dtype": "fp16", "layout": "nn"}, True),
    ({"M": 4096, "N": 4096, "K": 4096, "dtype": "bf16", "layout": "nt"}, True),
    ({"M": 1024, "N": 3072, "K": 1024, "dtype": "bf16", "layout": "nt"}, False),
])
def test_the_stored_gemm_configs_answer_and_fit_a_hopper_gpu(tuned_gemm, problem, exact):
    choice = tuned_gemm.choose("gemm", "sm_90a", problem, max_error=None)
    assert choice.exact == exact and choice.tuned_problem["layout"] == problem["layout"]
    spec = find_spec("gemm", "sm_90a")
    assert misfit(spec, choice, spec.validate_problem(problem), Target.documented("sm_90a")) is None
    assert choice.rel_l2 <= spec.max_error(choice.config, problem)
