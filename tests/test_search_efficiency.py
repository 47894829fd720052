"""The search-efficiency benchmark, small: our default against Kernel Tuner on one recorded space.

The space is one of our own exhaustive H100 attention studies, written as a Kernel Tuner cache
file so that Kernel Tuner's simulation mode replays exactly what our replay executor does.
"""

from __future__ import annotations

import json

import pytest

from bench.search_efficiency import main
from bench.search_runs import TraceFile
from bench.warm_start import compare, configs_of
from tests.test_replay import ATTENTION_DB, SMALL_STUDY
from tuner.workers.replay_space import load_tuner_studies, open_recording, write_kernel_tuner_cache

pytest.importorskip("kernel_tuner", reason="the head-to-head needs kernel-tuner (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def attention_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("spaces") / "attention_h100.json"
    write_kernel_tuner_cache(open_recording(ATTENTION_DB, SMALL_STUDY), path)
    return path


def test_the_default_finds_the_recorded_optimum_within_its_budget_beside_kernel_tuner(attention_cache, tmp_path):
    space = open_recording(attention_cache)
    assert len(space.records) == 58 and len(space.rejected) == 230
    out = tmp_path / "search"
    result = main(["--spaces", str(attention_cache), "--seeds", "2", "--budgets", "10,40",
                   "--samplers", "forest,random", "--kt", "random_sample,genetic_algorithm",
                   "--devices", "1,8", "--out", str(out), "--no-plot"])
    assert set(result) == {"device", "date", "spaces", "rows", "wall_to_band"}
    assert result["spaces"][space.name] == {"optimum": pytest.approx(space.optimum_s), "valid": 58}
    rows = {(r["tool"], r["strategy"], r["budget"]): r for r in result["rows"]}
    assert {("kernel_tuner", "random_sample", 40), ("kernel_tuner", "genetic_algorithm", 40),
            ("tuner", "random", 40)} <= set(rows)
    ours = rows[("tuner", "default", 40)]
    assert ours["median_ratio"] == 1.0 and ours["within2pct"] == 1.0  # the optimum, on every seed
    assert all(r["median_ratio"] >= 1.0 for r in result["rows"])
    walls = {(w["tool"], w["devices"]) for w in result["wall_to_band"]}
    assert {("tuner", 1), ("tuner", 8), ("kernel_tuner", 1), ("kernel_tuner", 8)} <= walls
    assert json.loads(out.with_suffix(".json").read_text())["rows"] == result["rows"]
    assert "Kernel Tuner's best" in out.with_suffix(".md").read_text()


def test_kernel_tuners_rows_come_from_an_earlier_result_and_seeds_from_another_range(attention_cache, tmp_path):
    """--kt-from takes Kernel Tuner's rows of the strategies not run now; --first-seed runs ours
    on a held-out seed range."""
    common = ["--spaces", str(attention_cache), "--seeds", "2", "--budgets", "10,40", "--samplers", "random",
              "--devices", "1", "--no-plot"]
    first = main(common + ["--kt", "random_sample", "--out", str(tmp_path / "first")])
    runs = tmp_path / "second.runs.jsonl"
    second = main(common + ["--kt", "none", "--kt-from", str(tmp_path / "first.json"), "--first-seed", "2",
                            "--out", str(tmp_path / "second")])
    theirs = [r for r in first["rows"] if r["tool"] == "kernel_tuner"]
    assert theirs and [r for r in second["rows"] if r["tool"] == "kernel_tuner"] == theirs
    assert {TraceFile(runs).traces[k].seed for k in TraceFile(runs).traces} == {2, 3}
    ours_only = tmp_path / "ours.json"
    ours_only.write_text(json.dumps({**second, "rows": [r for r in second["rows"] if r["tool"] == "tuner"]}))
    with pytest.raises(SystemExit, match="no Kernel Tuner rows"):
        main(common + ["--kt", "none", "--kt-from", str(ours_only), "--out", str(tmp_path / "third")])


def test_a_warm_start_from_the_nearest_shapes_begins_with_their_fronts(tmp_path):
    studies = load_tuner_studies(ATTENTION_DB)
    target = next(s for s in studies if s.name == SMALL_STUDY)
    others = [s for s in studies if s.name != SMALL_STUDY]
    front, fastest = configs_of(next(s for s in others if s.name == SMALL_STUDY.replace("causal0", "causal1")))
    assert front and fastest[0] in front
    row = compare(target, others, seeds=2, label="nearest tuned shapes", runs=TraceFile(tmp_path / "runs.jsonl"))
    assert row["warm_configs"] > 0 and row["warm_median"] <= row["cold_median"]


def test_kernel_tuner_drives_our_attention_source_with_our_constraints():
    """What the GPU pipeline benchmark hands Kernel Tuner, checked without a GPU: our valid configs
    that its CuPy backend can launch (no more than 48 KB of dynamic shared memory: it never opts in)."""
    from bench.search_gpu_pipeline import ARCH, H100_LIMITS, KT_SHARED_LIMIT, count_valid, kt_arguments, problem_of
    from tuner.kernel_templates import Device, find_spec
    from tuner.kernel_templates.attention_cuda import shared_bytes
    from tuner.samplers.candidates import valid_configs

    problem = problem_of("B=16,H=96,S=512,D=64,causal=false,dtype=fp16")
    options = kt_arguments(problem)
    ours = valid_configs(find_spec("attention", ARCH, "mma_sync"), problem, Device(ARCH, limits=H100_LIMITS))
    launchable = [c for c in ours.configs
                  if shared_bytes(dict(zip(ours.names, c, strict=True)), problem) <= KT_SHARED_LIMIT]
    assert len(ours) == 144 and count_valid(options) == len(launchable) < len(ours)
    first = dict(zip(ours.names, ours.configs[0], strict=True))
    config = {**first, "block_size_x": 32 * first["warps"]}
    assert options["kernel_source"](config).startswith("#define BLOCK_M")
    assert options["problem_size"](config)[1] == 16 * 96
