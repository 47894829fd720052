"""The target: made once where --arch is resolved, passed down to compile, check() and the job."""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import require
from tuner.arch import local_gpu_capability, resolve_target
from tuner.errors import UsageError
from tuner.kernel_templates import ARCHS, Device, Target, find_spec
from tuner.workers import TimingPolicy, backend_for, get_backend
from tuner.workers.executor import LocalExecutor


def test_an_arch_resolves_to_one_frozen_target_with_its_documented_facts() -> None:
    hopper = resolve_target("sm_90a", remote_cluster=True)
    assert (hopper.backend, hopper.arch, hopper.capability, hopper.capability_text) == ("cuda", "sm_90a", (9, 0), "9.0")
    assert hopper.limits["max_shared_bytes"] == 232448 and hopper.limits["max_threads_per_block"] == 1024
    assert resolve_target("sm_80", remote_cluster=True).limits["max_shared_bytes"] == 166912
    cpu = resolve_target("cpu", remote_cluster=False)
    assert (cpu.backend, cpu.arch, cpu.capability) == ("cpu", "cpu", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hopper.arch = "sm_80"  # type: ignore[misc]


def test_unknown_or_absent_archs_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown arch 'sm_12'"):
        resolve_target("sm_12", remote_cluster=True)
    if local_gpu_capability() is None:
        with pytest.raises(UsageError, match="needs a CUDA GPU"):
            resolve_target("sm_90a", remote_cluster=False)
        assert resolve_target("auto", remote_cluster=False).arch == "cpu"


def test_device_is_the_target_so_templates_written_for_device_keep_working() -> None:
    assert Device is Target
    device = Device("cpu", limits={"cores": 2})  # as user templates' own tests build one
    assert device.backend == "cpu" and device.limits["cores"] == 2 and device.name == ""
    assert Device(arch="sm_86", name="RTX", limits={}).capability == (8, 6)
    with pytest.raises(ValueError, match="unknown arch"):
        Target("sm_99")
    assert Target("sm_99", backend="cuda").capability is None  # a new arch names its backend


def test_backends_say_which_targets_they_support() -> None:
    cpu, cuda = get_backend("cpu"), get_backend("cuda")
    assert cpu.supports(Target.documented("cpu")) and not cpu.supports(Target.documented("sm_90a"))
    assert [a for a in ARCHS if cuda.supports(Target.documented(a))] == ["sm_80", "sm_86", "sm_89", "sm_90", "sm_90a"]
    assert backend_for(Target.documented("sm_80")) is cuda
    with pytest.raises(ValueError, match="no backend builds for cuda arch 'sm_99'"):
        backend_for(Target("sm_99", backend="cuda"))


def test_the_measuring_device_refines_the_target_and_keeps_what_it_was() -> None:
    device = get_backend("cpu").device(Target.documented("cpu"))
    assert device.arch == "cpu" and device.name and device.limits["cores"] >= 1
    hopper = get_backend("cuda").device(Target.documented("sm_90a"))
    assert hopper.arch == "sm_90a" and hopper.capability == (9, 0)
    assert hopper.limits["max_shared_bytes"] > 0


class _Recording(LocalExecutor):
    """The local executor, keeping the jobs it was given."""

    def __init__(self) -> None:
        super().__init__(TimingPolicy(budget_s=0.005, min_repeats=3))
        self.jobs: list = []

    def submit(self, job) -> None:
        self.jobs.append(job)
        super().submit(job)


def test_one_target_reaches_check_and_every_job(tmp_path, monkeypatch) -> None:
    """`tuner run` resolves --arch once; check() and each job get the measuring device's target."""
    require(bool(get_backend("cpu").compiler_version()), "a C compiler")
    from tuner import commands
    from tuner.cli import main

    seen: list[Target] = []
    spec = find_spec("attention", "cpu")
    original = type(spec).check
    monkeypatch.setattr(type(spec), "check", lambda self, c, p, d: seen.append(d) or original(self, c, p, d))
    resolved: list[Target] = []
    real_resolve = commands.resolve_target

    def resolve(*args, **kwargs) -> Target:
        resolved.append(real_resolve(*args, **kwargs))
        return resolved[-1]

    monkeypatch.setattr(commands, "resolve_target", resolve)
    executor = _Recording()
    monkeypatch.setattr(commands, "_make_executor", lambda args: executor)
    code = main(["run", "--arch", "cpu", "--shape", "B=1,H=1,S=32,D=16", "--trials", "3", "--no-progress",
                 "--db", f"sqlite:///{tmp_path / 't.db'}"])
    assert code == 0
    assert len(resolved) == 1 and resolved[0].arch == "cpu"
    device = get_backend("cpu").device(resolved[0])
    assert seen and all(d == device for d in seen)
    assert executor.jobs and all(job.target == device for job in executor.jobs)
    # each measured trial stores what its compile cost
    from tuner.db import Store
    from tuner.service import Service

    with Store.open(f"sqlite:///{tmp_path / 't.db'}") as store:
        (study,) = Service(store).studies()
        measured = [t for t in Service(store).trials(study.name).items if t.status != "invalid"]
    assert measured and all(t.compile_time_s > 0 for t in measured)
