"""tuner.runtime on the CPU backend: the stored config per call shape, the nearest problem where
the template admits it, the stated fallback, one lookup per shape, threads, read-only storage."""

from __future__ import annotations

import threading
import warnings

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.api.conftest import new_study, record
from tests.runtime.helpers import EXACT_CONFIG, FAST_CONFIG, SMALL, fill_attention, qkv, reference, rel_l2, torch
from tuner import runtime as rt
from tuner.db import Store, StoreError
from tuner.enums import Status


@pytest.fixture
def runtime_on_each_database(db_url: str) -> rt.Runtime:
    """The runtime over SQLite, then over the real PostgreSQL."""
    with Store.open(db_url) as store:
        fill_attention(store)
    return rt.configure(db=db_url)


def only_decision() -> rt.Decision:
    (decision,) = rt.decisions()
    return decision


@pytest.mark.parametrize("max_error, config", [(None, FAST_CONFIG), (1e-5, EXACT_CONFIG)])
def test_exact_problem_runs_the_fastest_config_within_the_bound(runtime_on_each_database, max_error,
                                                                config):
    q, k, v = qkv(SMALL)
    out = rt.attention(q, k, v, causal=True, max_error=max_error)
    decision = only_decision()
    assert decision.choice.exact and decision.choice.config == config
    assert decision.choice.origin.startswith("study 'small' trial")
    assert out.shape == q.shape and out.dtype == torch.float32
    assert rel_l2(out, reference(q, k, v, True)) < 1e-3


def test_nearest_problem_runs_where_the_template_admits_it(runtime):
    problem = {**SMALL, "S": 256, "H": 3}
    q, k, v = qkv(problem)
    out = rt.attention(q, k, v, causal=True)
    choice = only_decision().choice
    assert not choice.exact and choice.tuned_problem == SMALL and choice.config == FAST_CONFIG
    assert choice.distance == pytest.approx(2 + 0.5849625, abs=1e-6)  # S x4, H x1.5
    assert rel_l2(out, reference(q, k, v, True)) < 1e-3


def test_nearest_config_the_template_rejects_falls_back_to_sdpa(runtime):
    q, k, v = qkv({**SMALL, "S": 16})  # block_n=32 is refused for S=16
    with pytest.warns(rt.FallbackWarning, match="does not fit this problem: block_n=32 exceeds S=16"):
        out = rt.attention(q, k, v, causal=True)
    assert torch.equal(out, torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert only_decision().choice is None


@pytest.mark.parametrize("change, reason", [
    (dict(causal=False), "no ok trial of kernel 'attention' on arch cpu"),
    (dict(max_error=1e-7), "within max_error 1e-07"),
    (dict(dtype=torch.float64), "computes float32, not torch.float64"),
    (dict(kv_length=32), "k, v [B, H_kv, S, D] with H_kv dividing H"),
])
def test_calls_nothing_stored_fits_run_sdpa_and_say_why(runtime, change, reason):
    q, k, v = qkv(SMALL)
    if "dtype" in change:
        q, k, v = (t.to(change["dtype"]) for t in (q, k, v))
    if "kv_length" in change:
        k, v = k[:, :, :32], v[:, :, :32]
    causal = change.get("causal", True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = rt.attention(q, k, v, causal=causal, max_error=change.get("max_error"))
        again = rt.attention(q, k, v, causal=causal, max_error=change.get("max_error"))
    messages = [str(w.message) for w in caught if issubclass(w.category, rt.FallbackWarning)]
    assert len(messages) == 1 and reason in messages[0]  # said once per shape
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert torch.equal(out, expected) and torch.equal(again, expected)


def test_inputs_that_need_gradients_go_to_sdpa_and_get_them(runtime):
    q, k, v = (t.requires_grad_() for t in qkv(SMALL))
    rt.attention(q, k, v, causal=True).sum().backward()
    assert q.grad is not None and rt.decisions() == []  # never looked up: autograd needs SDPA


def test_later_calls_of_a_shape_ask_the_database_nothing(runtime):
    statements = []

    def count(*_args):
        statements.append(1)

    q, k, v = qkv(SMALL)
    first = rt.attention(q, k, v, causal=True)
    event.listen(Engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            assert torch.equal(rt.attention(q, k, v, causal=True), first)
        other = qkv({**SMALL, "S": 128})
        rt.attention(*other, causal=True)  # a new shape: one lookup
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert statements and len(rt.decisions()) == 2
    looked_up = len(statements)
    rt.attention(*other, causal=True)
    assert len(statements) == looked_up


class CountingAnswers(rt.DatabaseAnswers):
    """The real database answers, counting the lookups."""

    def __init__(self, url: str):
        super().__init__(url)
        self.lookups = 0

    def choose(self, *args, **kwargs):
        self.lookups += 1
        return super().choose(*args, **kwargs)


def test_threads_share_plans_and_each_shape_is_looked_up_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        fill_attention(store)
    answers = CountingAnswers(url)
    runtime = rt.Runtime(answers)
    shapes = [{**SMALL, "S": s} for s in (64, 96, 128)]
    inputs = [qkv(p, seed=i) for i, p in enumerate(shapes)]
    expected = [reference(*x, True) for x in inputs]
    errors: list[float] = []
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(10):
            for x, ref in zip(inputs, expected, strict=True):
                errors.append(rel_l2(rt.attention(*x, causal=True), ref))

    rt.runtime._current = runtime  # this runtime is the process's for the test
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 120 and max(errors) < 1e-3
    assert answers.lookups == 3 and len(runtime.decisions()) == 3


def test_the_database_is_opened_read_only(db_url):
    with Store.open(db_url) as store:
        fill_attention(store)
    with Store.open(db_url, read_only=True) as store:
        assert [s.name for s in store.studies()] == ["small"]
        with pytest.raises(StoreError):
            store.ensure_study(name="new", kernel="attention", backend="cpu", template_path=None,
                               problem=SMALL, arch="cpu", device_name="x", sampler="tpe",
                               directions=["minimize"])
    with Store.open(db_url) as store:
        assert [s.name for s in store.studies()] == ["small"]


def test_a_missing_database_is_a_stated_fallback(tmp_path):
    rt.configure(db=f"sqlite:///{tmp_path / 'none.db'}")
    q, k, v = qkv(SMALL)
    with pytest.warns(rt.FallbackWarning, match="no database file"):
        rt.attention(q, k, v, causal=True)
    assert not (tmp_path / "none.db").exists()


def test_a_stored_config_the_template_no_longer_has_falls_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        record(store, new_study(store, "old", SMALL), 0, {"block_k": 8}, Status.OK, 1e-3, 1e-6, SMALL)
    rt.configure(db=url)
    with pytest.warns(rt.FallbackWarning, match="not one of the template's current space"):
        rt.attention(*qkv(SMALL), causal=True)


GQA = {**SMALL, "H": 4, "H_kv": 2}  # two query heads per k/v head


def gqa_inputs(problem: dict, seed: int = 0) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(problem["B"], problem["H"], problem["S"], problem["D"], generator=generator)
    k, v = (torch.randn(problem["B"], problem["H_kv"], problem["S"], problem["D"], generator=generator)
            for _ in range(2))
    return q, k, v


def gqa_reference(q, k, v) -> torch.Tensor:
    return torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True,
                                                            enable_gqa=True)


def test_grouped_query_attention_runs_the_config_tuned_for_its_kv_heads(tmp_path):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        fill_attention(store)
        record(store, new_study(store, "gqa", GQA), 0, {"exp": "poly3", "block_n": 16}, Status.OK, 1e-3, 1e-4, GQA)
    rt.configure(db=url)
    q, k, v = gqa_inputs(GQA)
    out = rt.attention(q, k, v, causal=True)
    decision = only_decision()
    assert decision.problem["H_kv"] == 2 and decision.choice.exact and decision.choice.config["block_n"] == 16
    assert out.shape == q.shape and rel_l2(out, gqa_reference(q, k, v)) < 1e-3


def test_grouped_query_attention_nothing_was_tuned_for_runs_sdpa_grouped(runtime):
    q, k, v = gqa_inputs(GQA)
    with pytest.warns(rt.FallbackWarning, match="'H_kv': 2"):
        out = rt.attention(q, k, v, causal=True)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert torch.equal(out, expected)


def test_kv_heads_that_do_not_divide_the_query_heads_run_sdpa_and_say_why(runtime):
    q, k, v = gqa_inputs({**GQA, "H": 3})
    with pytest.warns(rt.FallbackWarning, match="H_kv dividing H"), pytest.raises(RuntimeError):
        rt.attention(q, k, v, causal=True)  # SDPA itself refuses 3 query heads over 2
