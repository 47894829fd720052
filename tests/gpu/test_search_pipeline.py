"""The GPU pipeline benchmark at a small budget: both tools measure, ours verifies as it goes."""

from __future__ import annotations

import json

import pytest

from bench.search_gpu_pipeline import main

pytestmark = pytest.mark.gpu


def test_ours_and_kernel_tuner_both_measure_the_attention_source(tmp_path):
    pytest.importorskip("kernel_tuner", reason="carry kernel-tuner among the device wheels")
    main(["--out", str(tmp_path), "--budget", "8"])
    result = json.loads((tmp_path / "search_gpu_pipeline.json").read_text())
    ours, theirs = result["rows"]
    assert ours["evaluations"] == 8 and ours["first_measurement_s"] > 0 and 0 < ours["gpu_share"] < 1
    assert theirs["evaluations"] > 0 and theirs["evaluations_per_minute"] > 0
