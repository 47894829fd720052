"""The registry finds built-in templates by (name, arch); several families of one kernel stand side by side."""

from __future__ import annotations

import json

import pytest

from tuner.cli import main
from tuner.kernel_templates import (
    KernelSpec,
    SpecError,
    builtin_specs,
    find_builtin,
    find_spec,
    kernel_spec,
    problem_spec,
    specs_for,
)
from tuner.kernel_templates.attention_cpu import AttentionCpu
from tuner.kernel_templates.registry import check_families
from tuner.kernel_templates.spec import ProblemParam
from tuner.workers import SpecRef, load_spec

SHAPE = "B=1,H=1,S=32,D=16"


def test_lookups_by_name_and_arch() -> None:
    mma_sync, wgmma = specs_for("attention", "sm_90a")
    assert (mma_sync.backend, mma_sync.family, wgmma.family) == ("cuda", "mma_sync", "wgmma")
    assert find_spec("attention", "sm_80") is mma_sync and find_spec("attention", "sm_90a", "mma_sync") is mma_sync
    assert find_spec("attention", "sm_90a", "wgmma") is wgmma and problem_spec("attention", "sm_90a") is mma_sync
    both = kernel_spec("attention", "sm_90a")  # one template over both families
    assert both.members["wgmma"] is wgmma and both.members["mma_sync"] is mma_sync
    (cpu,) = specs_for("attention", "cpu")
    assert cpu.backend == "cpu" and find_builtin("attention", "cpu") is cpu


def test_lookup_errors_name_what_there_is() -> None:
    with pytest.raises(SpecError, match="unknown kernel 'nope': choose one of attention"):
        specs_for("nope", "cpu")
    with pytest.raises(SpecError, match="no family 'wgmma' on sm_80 \\(it has: mma_sync\\)"):
        find_spec("attention", "sm_80", "wgmma")
    with pytest.raises(SpecError, match="2 families on sm_90a \\(mma_sync, wgmma\\): choose one with --family"):
        find_spec("attention", "sm_90a")
    with pytest.raises(SpecError, match="no built-in template is kernel 'attention' for backend cuda, family 'x'"):
        find_builtin("attention", "cuda", "x")


def test_two_families_stand_side_by_side(two_cpu_families) -> None:
    default, serial = specs_for("attention", "cpu")
    assert (default.family, serial.family) == ("", "serial")
    with pytest.raises(SpecError, match="2 families on cpu \\(\\(unnamed\\), serial\\): choose one with --family"):
        find_spec("attention", "cpu")
    assert find_spec("attention", "cpu", "serial") is serial
    assert problem_spec("attention", "cpu") is default  # the families share one problem
    # a worker finds the same family again from the job's reference
    assert load_spec(SpecRef("attention", "cpu", family="serial")) is serial
    assert load_spec(SpecRef("attention", "cpu")) is default
    assert specs_for("attention", "sm_80") == (find_spec("attention", "sm_80"),)  # other archs untouched


def test_a_run_picks_a_family_and_best_answers_from_its_study(two_cpu_families, tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    run = ["run", "--arch", "cpu", "--shape", SHAPE, "--trials", "3", "--no-progress", "--executor", "local",
           "--db", db]
    assert main(run + ["--family", "serial", "--seed", "1"]) == 0  # (without --family: tests/test_families.py)
    assert main(["studies", "--db", db]) == 0
    assert "attention-serial-cpu-B1-H1-S32-D16-causal0" in capsys.readouterr().out
    assert main(["best", "--arch", "cpu", "--shape", SHAPE, "--db", db]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["provenance"]["study"] == "attention-serial-cpu-B1-H1-S32-D16-causal0"
    assert answer["config"]["threads"] == 1


def test_tuner_kernels_lists_each_family(two_cpu_families, capsys) -> None:
    assert main(["kernels"]) == 0
    out = capsys.readouterr().out
    assert "attention (cuda, family mma_sync: sm_80" in out and "attention (cpu, family serial: cpu)" in out


def test_families_must_differ_and_share_their_kernels_problem() -> None:
    class Twin(AttentionCpu):
        pass

    class OtherProblem(AttentionCpu):
        family = "other"
        problem_params = AttentionCpu.problem_params + (ProblemParam("extra", int, 1),)

    with pytest.raises(SpecError, match="two templates are kernel 'attention', backend cpu, family ''"):
        check_families([AttentionCpu(), Twin()])
    with pytest.raises(SpecError, match="different problem parameters"):
        check_families([AttentionCpu(), OtherProblem()])
    with pytest.raises(SpecError, match="different problem parameters"):  # each backend's families apart
        check_families([find_spec("attention", "sm_90a", "mma_sync"), AttentionCpu(), OtherProblem()])
    check_families(list(builtin_specs()))
    assert all(isinstance(s, KernelSpec) for s in builtin_specs())
