"""The Hopper (wgmma) attention family on a real GPU (bench/attention_hopper_probe.sh and
bench/attention_hopper_next.sh run it).

Every tile shape and overlap mode a head dim admits, on ragged S, causal and not, fp16 and bf16,
D 64/128/256 and grouped-query attention, against the fp32 reference on fresh random inputs, the
output poisoned with NaN first (an unwritten element is an error); the TMA epilogue and 2-block
clusters on the same problems (their S give odd numbers of m-blocks, so a pair's second tile lies
past S, and causal pairs of unequal key ranges); FP8 (precision=e4m3) on the same shapes, fp16,
within its bound of the fp32 reference of the 16-bit inputs; and one config through the worker's
measurement, as a study runs it.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from tests.conftest import require
from tuner.kernel_templates import Target, find_spec
from tuner.workers import Job, SpecRef, Status, TimingPolicy, get_backend
from tuner.workers.cuda_launch import launcher
from tuner.workers.cuda_measure import error_metrics
from tuner.workers.cuda_runtime import gpu_count

pytestmark = pytest.mark.gpu

ARCH = "sm_90a"
TARGET = Target.documented(ARCH)
SPEC = find_spec("attention", ARCH, "wgmma")
BACKEND = get_backend("cuda")
# (B, H, H_kv, S): a ragged S of many tiles, one shorter than every tile, GQA with 2 and 4 query heads a K/V head
SHAPES = [(2, 3, 3, 1000), (1, 2, 2, 77), (1, 8, 4, 640), (2, 4, 1, 333)]
PROBLEMS = [{"B": b, "H": h, "H_kv": kv, "S": s, "D": d, "causal": c, "dtype": t}
            for (b, h, kv, s), d, c, t in itertools.product(SHAPES, (64, 128, 256), (False, True), ("fp16", "bf16"))]
FP8_PROBLEMS = [{"B": b, "H": h, "H_kv": kv, "S": s, "D": d, "causal": c, "dtype": "fp16", "fp8": True}
                for (b, h, kv, s), d, c in itertools.product(SHAPES, (64, 128, 256), (False, True))]


def problem_of(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as a checked problem; H_kv rides along where the problem has no such parameter
    yet (kv_heads reads it either way)."""
    if any(p.name == "H_kv" for p in SPEC.problem_params):
        return SPEC.validate_problem(values)
    return {**SPEC.validate_problem({k: v for k, v in values.items() if k != "H_kv"}), "H_kv": values["H_kv"]}


def configs_for(problem: dict[str, Any], new_only: bool = False) -> list[dict[str, Any]]:
    """With the direct epilogue and no cluster: for every block_m, overlap mode and ping-pong
    admitted here, the smallest block_n (3 stages where they fit) and the largest (2 stages); with
    a polynomial share of exp2 (e4m3), the largest alone. With
    the TMA epilogue, a 2-block cluster or both: the same for every block_m and overlap mode, with
    ping-pong wherever there are two warpgroups to take turns. ``new_only``: only the latter."""
    device = BACKEND.device(TARGET)
    names = [p.name for p in SPEC.params]
    every = [dict(zip(names, v, strict=True)) for v in itertools.product(*(p.choices for p in SPEC.params))]
    plain = [(c["epilogue"], c["cluster"]) == ("direct", 1) for c in every]
    ok = [c for c, old in zip(every, plain, strict=True) if SPEC.check(c, problem, device) is None
          and (old or c["pingpong"] == (c["block_m"] > 64)) and not (new_only and old)]
    picked = []
    kind = ("precision", "poly_exp2", "epilogue", "cluster", "block_m", "overlap", "pingpong")
    for key in sorted({tuple(c[k] for k in kind) for c in ok}):
        same = [c for c in ok if tuple(c[k] for k in kind) == key]
        smallest = min(same, key=lambda c: (c["block_n"], -c["stages"]))
        largest = max(same, key=lambda c: (c["block_n"], -c["stages"]))
        poly = key[1] > 0  # the polynomial exp2 changes the softmax's arithmetic alone: its largest tile
        picked += ([] if poly else [smallest]) + ([largest] if largest != smallest or poly else [])
    return picked


def problem_id(p: dict[str, Any]) -> str:
    return "B{B}-H{H}-kv{H_kv}-S{S}-D{D}-{dtype}-{c}".format(c="causal" if p["causal"] else "full", **p)


@pytest.fixture(scope="module", autouse=True)
def _gpu() -> None:
    require(gpu_count() > 0, "no CUDA GPU here: run bench/attention_hopper_probe.sh on a GPU machine")
    sources = {}
    for values in PROBLEMS + FP8_PROBLEMS:
        problem = problem_of(values)
        for config in configs_for(problem):
            source = SPEC.render(config, problem)
            sources[source.code_digest()] = source
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:  # fills the compile cache at once
        list(pool.map(lambda source: BACKEND.compile(source, TARGET), sources.values()))


def check_once(config: dict[str, Any], problem: dict[str, Any], seed: int) -> tuple[float, float, int]:
    """(rel. L2 error, max abs error, non-finite elements) of one launch on fresh inputs."""
    import torch

    source = SPEC.render(config, problem)
    artifact = BACKEND.compile(source, TARGET)
    assert artifact.error is None, artifact.log
    inputs = SPEC.make_inputs(problem, np.random.default_rng(seed))
    out = torch.full(SPEC.output_spec(problem).shape, float("nan"), dtype=inputs["q"].dtype, device="cuda")
    launcher(artifact.path, source, SPEC.kernel_inputs(inputs, config), out)()
    torch.cuda.synchronize()
    bad = int((~torch.isfinite(out)).sum())
    rel, worst = error_metrics(out, SPEC.reference(inputs, problem))
    return rel, worst, bad


@pytest.mark.parametrize("values", PROBLEMS, ids=problem_id)
def test_every_tile_shape_is_correct(values: dict[str, Any]) -> None:
    problem = problem_of(values)
    bound = SPEC.max_error({}, problem)
    failures = []
    for seed, config in enumerate(configs_for(problem)):
        rel, worst, bad = check_once(config, problem, seed)
        if bad or rel > bound:
            failures.append(f"{config}: rel L2 {rel:.2e}, max abs {worst:.2e}, {bad} non-finite")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("values", FP8_PROBLEMS, ids=problem_id)
def test_every_fp8_tile_shape_is_correct(values: dict[str, Any]) -> None:
    """e4m3 configs against the fp32 reference of the 16-bit inputs: what FP8 costs, within its bound."""
    problem = problem_of(values)
    bound = SPEC.max_error({"precision": "e4m3"}, problem)
    failures, errors = [], []
    for seed, config in enumerate(c for c in configs_for(problem) if c["precision"] == "e4m3"):
        rel, worst, bad = check_once(config, problem, seed)
        errors.append(rel)
        if bad or rel > bound:
            failures.append(f"{config}: rel L2 {rel:.2e}, max abs {worst:.2e}, {bad} non-finite")
    assert errors and not failures, "\n".join(failures)
    print(f"{problem_id(values)}: {len(errors)} e4m3 configs, rel L2 {min(errors):.2e}..{max(errors):.2e}")


def test_a_study_measures_it() -> None:
    problem = SPEC.validate_problem({"B": 2, "H": 8, "S": 1024, "D": 128, "causal": True})
    config = {"block_m": 128, "block_n": 128, "stages": 2, "overlap": "intra", "pingpong": True, "epilogue": "tma",
              "cluster": 2}
    source = SPEC.render(config, problem)
    job = Job(trial_id=0, spec=SpecRef("attention", "cuda", family="wgmma"), config=config, problem=problem,
              target=TARGET, source=source, seed=0)
    result = BACKEND.measure(job, BACKEND.compile(source, TARGET), SPEC, TimingPolicy(warmup_s=0.002, budget_s=0.01))
    assert result.status is Status.OK, result.reason
    assert result.rel_l2 <= 2e-3
