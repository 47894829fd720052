"""The README's CUDA example on a real GPU (run by bench/cuda_example.sh on the device): its
`tuner run` and `tuner best` lines as printed, and every admitted config measured and verified."""

from __future__ import annotations

import json
import os
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import require
from tuner.check import admitted_configs
from tuner.cli import main
from tuner.kernel_templates import Target, load_spec_file
from tuner.workers import Job, SpecRef, Status, TimingPolicy, get_backend
from tuner.workers.cuda_runtime import gpu_count

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "examples/softmax_cuda.py"
SPEC = load_spec_file(str(ROOT / TEMPLATE))
BACKEND = get_backend("cuda")
ARCH = "sm_90a"
TARGET = Target.documented(ARCH)
QUICK = TimingPolicy(warmup_s=0.002, budget_s=0.005, min_repeats=20)
# cols=16384 caches 64 KB of row: past the 48 KB a kernel gets without opting in. cols=1001 is
# ragged for every block size and rules out the float4 variants.
PROBLEMS = [{"rows": 64, "cols": 16384}, {"rows": 300, "cols": 1001}, {"rows": 4096, "cols": 4096}]


@pytest.fixture(scope="module", autouse=True)
def _gpu() -> None:
    require(gpu_count() > 0, "no CUDA GPU here: run bench/cuda_example.sh on a GPU machine")


def test_the_readme_lines_run_as_printed(tmp_path, ray_session, monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    readme = (ROOT / "README.md").read_text()
    lines = re.findall(rf"^tuner ((?:run|best) .*--template {re.escape(TEMPLATE)}.*)$", readme, re.M)
    assert [line.split()[0] for line in lines] == ["run", "best"]
    db = f"sqlite:///{tmp_path / 'tuner.db'}"
    run, best_line = lines
    assert main(shlex.split(run) + ["--db", db]) == 0, run
    capsys.readouterr()
    assert main(shlex.split(best_line) + ["--db", db]) == 0, best_line
    best = json.loads(capsys.readouterr().out)
    assert best["kernel"] == "softmax" and best["exact"] and best["rel_l2"] <= 1e-4
    assert set(best["config"]) == {p.name for p in SPEC.params}


@pytest.mark.parametrize("shape", PROBLEMS, ids=lambda p: f"{p['rows']}x{p['cols']}")
def test_every_admitted_config_is_correct(shape: dict) -> None:
    problem = SPEC.validate_problem(shape)
    configs, _ = admitted_configs(SPEC, problem, BACKEND.device(TARGET))
    assert len(configs) == (16 if shape["cols"] % 4 else 32)
    sources = [SPEC.render(config, problem) for config in configs]
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        artifacts = list(pool.map(lambda source: BACKEND.compile(source, TARGET), sources))
    wrong = []
    for seed, (config, source, artifact) in enumerate(zip(configs, sources, artifacts, strict=True)):
        job = Job(trial_id=seed, spec=SpecRef("softmax", "cuda", path=TEMPLATE), config=config,
                  problem=problem, target=TARGET, source=source, seed=seed)
        result = BACKEND.measure(job, artifact, SPEC, QUICK)
        if result.status is not Status.OK:
            wrong.append((config, result.status.value, result.reason))
    assert not wrong, wrong
