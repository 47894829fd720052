"""On request, a shape with no stored answer starts one background `tuner run`; once it has
ended, the next call of that shape runs what it stored."""

from __future__ import annotations

import warnings

import pytest

from tests.runtime.helpers import SMALL, fill_attention, qkv, reference, rel_l2, torch
from tuner import runtime as rt
from tuner.db import Store
from tuner.runtime.tuning import shape_text


def test_shape_text_is_what_tuner_run_parses():
    assert shape_text({"B": 2, "causal": True, "dtype": "fp16"}) == "B=2,causal=true,dtype=fp16"


@pytest.mark.slow
def test_a_missing_shape_is_tuned_in_the_background_then_used(tmp_path):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        fill_attention(store)  # causal only: the non-causal problem has no answer
    runtime = rt.configure(db=url, tune_missing=True,
                           tune_args=["--executor", "local", "--trials", "3", "--seed", "5"])
    q, k, v = qkv(SMALL)
    with pytest.warns(rt.FallbackWarning, match="a background `tuner run` is tuning it"):
        first = rt.attention(q, k, v, causal=False)
    assert torch.equal(first, torch.nn.functional.scaled_dot_product_attention(q, k, v))
    (tuning,) = runtime.tunings()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same shape neither warns nor tunes again meanwhile
        rt.attention(q, k, v, causal=False)
    assert tuning.wait() == 0, tuning.log.read_text()
    out = rt.attention(q, k, v, causal=False)  # drops the fallback plan: looks again
    out = rt.attention(q, k, v, causal=False)  # and now runs the config the run stored
    decision = rt.decisions()[-1]
    assert decision.choice is not None and decision.choice.exact, decision.reason
    assert decision.choice.origin.startswith("study 'attention-cpu-B1-H2-S64-D32-causal0'")
    assert rel_l2(out, reference(q, k, v, False)) < 2e-2
    assert len(runtime.tunings()) == 1
