"""Replaying recorded spaces: Kernel Tuner's cache format, our own exhaustive studies, the
simulated clock, and the whole tuner (CLI, sampler, constraint gate, storage) over a replay."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.db import Store
from tuner.kernel_templates import Source, Target
from tuner.kernel_templates.replay import ReplaySpec
from tuner.workers import Job, SpecRef, Status
from tuner.workers.replay_executor import ReplayExecutor
from tuner.workers.replay_space import RecordingError, open_recording

ATTENTION_DB = Path(__file__).resolve().parents[1] / "bench/results/attention_tuned.db.gz"
SMALL_STUDY = "attention-sm_90a-B16-H96-S512-D128-causal0-dtypebf16"  # 58 valid configs of 288


def kt_entry(bx: int, tile: int, time, compile_ms: float = 800.0, bench_ms: float = 100.0) -> dict:
    entry = {"block_size_x": bx, "tile": tile, "time": time, "compile_time": compile_ms,
             "benchmark_time": bench_ms, "framework_time": 2.0, "verification_time": 0}
    if not isinstance(time, str):
        entry["times"] = [time * 1.01, time, time * 0.99]
    return entry


@pytest.fixture
def kt_cache(tmp_path) -> Path:
    """A Kernel Tuner cache of 6 configs (bx*tile <= 256): one failed to compile, one at run time."""
    entries = [kt_entry(32, 1, 2.0), kt_entry(32, 2, 1.5), kt_entry(64, 1, 1.2), kt_entry(64, 2, 0.9),
               kt_entry(128, 1, "CompilationFailedConfig", bench_ms=0), kt_entry(128, 2, "RuntimeFailedConfig")]
    data = {"device_name": "Test GPU", "kernel_name": "toy", "problem_size": [1024],
            "tune_params_keys": ["block_size_x", "tile"],
            "tune_params": {"block_size_x": [32, 64, 128, 256], "tile": [1, 2]}, "objective": "time",
            "cache": {f"{e['block_size_x']},{e['tile']}": e for e in entries}}
    path = tmp_path / "toy_gpu.json.gz"
    with gzip.open(path, "wt") as handle:
        json.dump(data, handle)
    t1 = {"ConfigurationSpace": {"Conditions": [{"Expression": "block_size_x * tile <= 256"}]}}
    (tmp_path / "search_space_T1.json").write_text(json.dumps(t1))
    return path


def test_a_kernel_tuner_cache_reads_as_seconds_with_its_failures_and_restrictions(kt_cache):
    space = open_recording(kt_cache)
    assert space.device_name == "Test GPU" and space.arch == "toy_gpu"
    assert space.optimum_s == pytest.approx(0.9e-3)
    assert space.restrictions == ("block_size_x * tile <= 256",)
    failed = space.lookup({"block_size_x": 128, "tile": 1})
    assert failed.status is Status.COMPILE_ERROR and failed.compile_s == pytest.approx(0.8)
    assert space.lookup({"block_size_x": 128, "tile": 2}).status is Status.LAUNCH_ERROR
    spec = ReplaySpec(space)
    assert spec.check({"block_size_x": 256, "tile": 2}, {}, None) == "breaks the restriction block_size_x * tile <= 256"
    assert spec.check({"block_size_x": 256, "tile": 1}, {}, None) == "not in the recorded space"
    assert spec.check({"block_size_x": 64, "tile": 2}, {}, None) is None


def job(number: int, config: dict) -> Job:
    return Job(number, SpecRef("toy", "replay"), config, {}, Target("toy_gpu", backend="replay"),
               Source("replay", json.dumps(config), "toy"), 0)


def test_the_replay_clock_pipelines_compiles_and_returns_results_as_they_would_finish(kt_cache):
    space = open_recording(kt_cache)
    executor = ReplayExecutor(space, devices=1, compile_slots=2)
    executor.start(Target(space.arch, backend="replay"))
    executor.submit(job(0, {"block_size_x": 32, "tile": 1}))  # compiles 0.0-0.8, measures 0.8-0.902
    executor.submit(job(1, {"block_size_x": 128, "tile": 1}))  # compile fails at 0.8: never measured
    executor.submit(job(2, {"block_size_x": 64, "tile": 2}))  # compiles 0.8-1.6, measures 1.6-1.702
    results = {r.trial_id: r for r in (executor.next_result() for _ in range(3))}
    assert [f.measurement.trial_id for f in executor.history] == [1, 0, 2] and executor.next_result() is None
    assert results[0].status is Status.OK and results[0].timing.median_s == pytest.approx(2e-3)
    assert results[0].timing.repeats == 3 and results[0].rel_l2 == 0.0
    assert results[1].status is Status.COMPILE_ERROR and "CompilationFailedConfig" in results[1].reason
    assert executor.now_s == pytest.approx(1.702)


def run_replay(*args: str) -> int:
    return main(["run", "--no-progress", *args])


def test_the_whole_tuner_replays_a_space_measures_each_config_once_and_finds_its_optimum(kt_cache, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'replay.db'}"
    assert run_replay("--replay", str(kt_cache), "--trials", "50", "--seed", "3", "--db", db) == 0
    with Store.open(db, create=False) as store:
        study = store.studies()[0]
        trials = store.trials(study.id, limit=100).items
    assert len(trials) == 6  # every valid config once, none rejected, then the sampler had nothing new
    assert {t.status for t in trials} == {"ok", "compile_error", "launch_error"}
    best = min((t for t in trials if t.status == "ok"), key=lambda t: t.median_s)
    assert best.config == {"block_size_x": 64, "tile": 2} and best.median_s == pytest.approx(0.9e-3)


def test_our_own_exhaustive_study_replays_and_the_default_finds_its_optimum_within_the_budget(tmp_path, capsys):
    space = open_recording(ATTENTION_DB, SMALL_STUDY)
    assert len(space.records) == 58 and len(space.rejected) == 230 and space.has_error
    db = f"sqlite:///{tmp_path / 'replay.db'}"
    assert run_replay("--replay", str(ATTENTION_DB), "--replay-study", SMALL_STUDY, "--trials", "30",
                      "--seed", "1", "--db", db) == 0
    assert main(["best", "--arch", "sm_90a", "--kernel", "attention", "--db", db,
                 "--shape", "B=16,H=96,S=512,D=128,causal=false,dtype=bf16"]) == 0
    answer = json.loads(_last_json(capsys))
    assert answer["latency_s"] == pytest.approx(space.optimum_s)
    with Store.open(db, create=False) as store:
        trials = store.trials(store.studies()[0].id, limit=100).items
    assert len(trials) == 30 and all(t.status != "invalid" for t in trials)
    assert len({json.dumps(t.config, sort_keys=True) for t in trials}) == 30  # no repeats


def _last_json(capsys) -> str:
    out = capsys.readouterr().out
    return out[out.index("{"):]


@pytest.mark.parametrize("args, message", [
    (["--replay", "/no/such.json.gz"], "does not exist"),
    (["--replay", str(ATTENTION_DB)], "holds 28 studies: name one with --replay-study"),
    (["--replay", str(ATTENTION_DB), "--replay-study", "nope"], "has no study 'nope'"),
    (["--replay", str(ATTENTION_DB), "--shape", "B=1"], "drop --shape"),
])
def test_bad_replay_input_gets_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert run_replay(*args, "--db", f"sqlite:///{tmp_path / 'x.db'}") == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()


def test_a_file_that_is_no_recording_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"cache": {}}')
    with pytest.raises(RecordingError, match="needs tune_params"):
        open_recording(bad)
