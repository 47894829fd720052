"""tuner.runtime.kernel: a user's template file as a callable on torch tensors."""

from __future__ import annotations

import pytest

from tests.runtime.helpers import SOFTMAX, fill_softmax, torch
from tuner import runtime as rt
from tuner.db import Store
from tuner.kernel_templates import SpecError

PROBLEM = {"rows": 16, "cols": 48}


@pytest.fixture
def softmax(tmp_path) -> rt.TemplateKernel:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        fill_softmax(store, PROBLEM)
    rt.configure(db=url)
    return rt.kernel(SOFTMAX)


def test_a_template_runs_its_stored_config(softmax):
    x = torch.randn(PROBLEM["rows"], PROBLEM["cols"])
    y = softmax(x, **PROBLEM)
    assert torch.allclose(y, torch.softmax(x, dim=1), atol=1e-6)
    (decision,) = rt.decisions()
    assert decision.kernel == "softmax" and decision.choice.exact
    assert decision.choice.config == {"unroll": 4, "threads": 1, "fast_math": False}


def test_a_nearby_problem_runs_the_nearest_config(softmax):
    x = torch.randn(64, 48)
    assert torch.allclose(softmax(x, rows=64, cols=48), torch.softmax(x, dim=1), atol=1e-6)
    assert rt.decisions()[0].choice.tuned_problem == PROBLEM


def test_nothing_stored_is_an_error_that_says_what_to_run(tmp_path):
    rt.configure(db=f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(rt.NotTuned, match="no database file"):
        rt.kernel(SOFTMAX)(torch.randn(4, 4), rows=4, cols=4)


@pytest.mark.parametrize("call, error, message", [
    (lambda k: k(torch.randn(16, 40), **PROBLEM), ValueError, r"takes inputs \(shape, dtype\) \[\(\(16, 48\)"),
    (lambda k: k(torch.randn(16, 48).double(), **PROBLEM), ValueError, "float64"),
    (lambda k: k(torch.randn(16, 48), rows=16, colz=48), ValueError, "no problem parameter 'colz'"),
    (lambda k: k(torch.randn(16, 48), rows=0, cols=48), ValueError, "rows must be at least 1"),
    (lambda k: k(**PROBLEM), TypeError, "pass the input tensors"),
    (lambda k: k(torch.randn(16, 48, requires_grad=True), **PROBLEM), rt.NotTuned, "no gradients"),
])
def test_bad_calls_say_what_is_wrong(softmax, call, error, message):
    with pytest.raises(error, match=message):
        call(softmax)
    assert all(d.choice is None for d in rt.decisions())


def test_a_missing_template_file_says_so(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        rt.kernel(tmp_path / "nope.py")
