"""Precision as a knob on the front: one stored GEMM study (a bf16 problem with fp8=true) holds
trials of both precisions, and `tuner best --max-error` answers with the FP8 config where the
bound admits FP8's error and with the bf16 one where it does not. CPU only: the study is stored
through the Store API, its configs the template's own (check() admits each)."""

from __future__ import annotations

import json

import pytest

from tests.db_fixtures import measurement
from tuner.cli import main
from tuner.db import Store, StudyRecord
from tuner.kernel_templates import Target, find_spec
from tuner.workers import get_backend

SPEC = find_spec("gemm", "sm_90a")
PROBLEM = SPEC.validate_problem({"M": 4096, "N": 4096, "K": 4096, "layout": "nt", "fp8": True})
NATIVE = {"block_m": 128, "block_n": 256, "block_k": 64, "stages": 4, "consumers": 2, "cluster": 2,
          "persistent": True, "raster": "m", "epilogue": "direct", "split_k": 1, "schedule": "cooperative",
          "precision": "native"}
FP8 = NATIVE | {"block_k": 128, "precision": "e4m3"}
# (config, latency s, rel L2): FP8 the fast end at its quantization cost (0.037, as measured on the
# CPU for normal inputs), bf16 slower and within its own rounding
TRIALS = [(NATIVE, 1.0e-3, 3.1e-3), (NATIVE | {"stages": 3, "epilogue": "tma"}, 1.1e-3, 3.0e-3),
          (FP8, 0.55e-3, 0.0374), (FP8 | {"raster": "n"}, 0.6e-3, 0.0373)]


def store_mixed_study(store: Store, name: str) -> StudyRecord:
    """The study of TRIALS, each config admitted by check() and within the template's bound."""
    device = get_backend("cuda").device(Target.documented("sm_90a"))
    study = store.ensure_study(name=name, kernel="gemm", backend="cuda", template_path=None,
                               problem=PROBLEM, arch="sm_90a", device_name="NVIDIA H200", sampler="forest",
                               directions=["minimize", "minimize"], space=SPEC.space())
    for number, (config, latency, error) in enumerate(TRIALS):
        assert SPEC.check(config, PROBLEM, device) is None
        assert error <= SPEC.max_error(config, PROBLEM)
        m = measurement(median_s=latency, rel_l2=error, source_hash=f"{name}{number}")
        store.record_trial(study, number, config, m, f"// {number}")
    return study


@pytest.fixture
def mixed_study(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        store_mixed_study(store, "gemm-bf16-fp8")
    return url


def best(url: str, bound: float, capsys) -> dict:
    argv = ["best", "--kernel", "gemm", "--arch", "sm_90a", "--shape", "layout=nt", "--shape", "fp8=true",
            "--max-error", str(bound), "--db", url]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_best_takes_fp8_where_the_bound_admits_its_error_and_bf16_where_not(mixed_study, capsys):
    loose = best(mixed_study, 0.05, capsys)
    assert loose["config"]["precision"] == "e4m3" and loose["config"]["raster"] == "m"  # the fastest
    tight = best(mixed_study, 0.01, capsys)
    assert tight["config"]["precision"] == "native" and tight["config"]["stages"] == 4
    # between them: 0.0373 admits the second FP8 config alone, and FP8 stays the faster
    assert best(mixed_study, 0.03735, capsys)["config"] == FP8 | {"raster": "n"}
