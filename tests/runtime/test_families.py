"""tuner.runtime over a kernel with several families: each stored config runs as the family it
names (none: the default family), on the CPU with a second real family and against the committed
H100 database for the Hopper arch, where the mma_sync and wgmma families both run."""

from __future__ import annotations

import warnings

import pytest

from tests.api.conftest import new_study, record
from tests.committed import committed_database
from tests.runtime.helpers import FAST_CONFIG, SMALL, fill_attention, qkv, reference, rel_l2
from tuner import runtime as rt
from tuner.cli import main
from tuner.db import Store
from tuner.enums import Status
from tuner.kernel_templates import Target, kernel_spec
from tuner.kernel_templates.families import Families
from tuner.runtime.runtime import misfit


@pytest.fixture
def url(tmp_path, two_cpu_families) -> str:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        fill_attention(store)
    return url


def run_tuned(url: str) -> tuple[rt.Choice, float]:
    """The one call's choice and its output's error, where no fallback may run."""
    rt.configure(db=url)
    q, k, v = qkv(SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error", rt.FallbackWarning)
        out = rt.attention(q, k, v, causal=True)
    (decision,) = rt.decisions()
    assert decision.choice is not None, decision.reason
    return decision.choice, rel_l2(out, reference(q, k, v, True))


def test_a_config_that_names_no_family_runs_as_the_default_family(url):
    assert isinstance(kernel_spec("attention", "cpu"), Families)
    choice, error = run_tuned(url)
    assert choice.config == FAST_CONFIG and error < 1e-3


def test_a_config_of_the_second_family_runs_as_that_family(url):
    serial = {"family": "serial", **FAST_CONFIG}
    with Store.open(url) as store:
        record(store, new_study(store, "serial", SMALL), 0, serial, Status.OK, 5e-4, 1e-4, SMALL)
    choice, error = run_tuned(url)
    assert choice.config == serial and error < 1e-3


def test_a_config_of_a_family_this_arch_lacks_runs_the_fallback_and_says_so(url):
    with Store.open(url) as store:
        record(store, new_study(store, "elsewhere", SMALL), 0, {"family": "wgmma"}, Status.OK, 5e-4, 1e-4,
               SMALL)
    rt.configure(db=url)
    with pytest.warns(rt.FallbackWarning, match="has no family 'wgmma' here"):
        rt.attention(*qkv(SMALL), causal=True)


@pytest.fixture(scope="module")
def tuned_attention(tmp_path_factory) -> rt.DatabaseAnswers:
    return rt.DatabaseAnswers(committed_database("attention_tuned", tmp_path_factory.mktemp("db")))


@pytest.mark.parametrize("problem", [
    {"B": 4, "H": 8, "S": 512, "D": 64, "causal": True, "dtype": "fp16"},   # tests/gpu/test_runtime_gpu.py's
    {"B": 2, "H": 4, "S": 384, "D": 64, "causal": True, "dtype": "fp16"},   # its bundle test's
])
def test_the_committed_attention_configs_fit_the_hopper_arch_through_every_family(tuned_attention, problem):
    spec = kernel_spec("attention", "sm_90a")
    assert isinstance(spec, Families)
    full = spec.validate_problem(problem)
    choice = tuned_attention.choose("attention", "sm_90a", full, max_error=1e-3)
    assert misfit(spec, choice, full, Target.documented("sm_90a")) is None


def test_a_bundle_of_both_families_runs_the_one_each_entry_names(url, tmp_path):
    serial = {"family": "serial", **FAST_CONFIG}
    with Store.open(url) as store:
        record(store, new_study(store, "serial", SMALL), 0, serial, Status.OK, 5e-4, 1e-4, SMALL)
    assert main(["export", "--db", url, "--bundle", str(tmp_path / "b")]) == 0
    rt.configure(bundle=tmp_path / "b")
    q, k, v = qkv(SMALL)
    out = rt.attention(q, k, v, causal=True)
    (decision,) = rt.decisions()
    assert decision.choice is not None, decision.reason
    assert decision.choice.config == serial and decision.choice.origin == f"bundle {tmp_path / 'b'}"
    assert rel_l2(out, reference(q, k, v, True)) < 1e-3
