"""Kernels that crash or hang, tuners killed with -9, tuners racing on one study: nothing lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench.reliability import SETUPS, fault_section, markdown, shares
from tests.conftest import require
from tuner.cli import main
from tuner.db import Store, StoreError
from tuner.kernel_templates import Target, load_spec_file
from tuner.kernel_templates.testing import faulty_cpu, faulty_cuda
from tuner.search_space import distributions
from tuner.service import NotFound, Service
from tuner.workers import Job, SpecRef, Status, TimingPolicy
from tuner.workers.executor import compile_job, measure_job

FAULTY = str(Path(faulty_cpu.__file__))
TEMPLATES = Path(faulty_cpu.__file__).parent


def rows(url: str, study: str) -> list:
    with Store.open(url, create=False) as store:
        return Service(store).trials(study, limit=10_000).items


def stored(url: str, study: str) -> int:
    try:
        return len(rows(url, study))
    except (StoreError, NotFound):
        return 0


def tuner_command(url: str, study: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tuner", "run", "--arch", "cpu", "--db", url, "--study", study,
            "--no-progress", *extra]


def test_measuring_workers_run_at_the_drivers_priority(ray_session):
    """Ray starts workers 15 nicer than its driver by default: beside a busy process at the
    driver's priority every healthy CPU trial then timed out (a loaded CI run, 2026-12-03). A
    local Ray's workers run at the driver's niceness; compile tasks add COMPILE_NICENESS."""
    import os

    import ray

    from tuner.workers.ray_executor import COMPILE_NICENESS, _yield_to_measuring

    @ray.remote
    def niceness(compiling: bool) -> int:
        if compiling:
            _yield_to_measuring()
        return os.nice(0)

    def fresh(compiling: bool):  # a runtime env of its own: a new worker process, not a reused one
        return niceness.options(runtime_env={"env_vars": {"TUNER_TEST_FRESH_WORKER": str(compiling)}})

    driver = os.nice(0)
    assert ray.get(fresh(False).remote(False)) == driver
    assert ray.get(fresh(True).remote(True)) == min(19, driver + COMPILE_NICENESS)


def test_faulty_variants_are_labelled_and_every_trial_is_accounted_for(tmp_path, ray_session):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    code = main(["run", "--arch", "cpu", "--template", FAULTY, "--shape", "n=4096", "--db", url,
                 "--study", "faults", "--sampler", "random", "--seed", "11", "--trials", "40",
                 "--trial-timeout", "8", "--no-progress"])
    assert code == 0
    trials = optuna.load_study(study_name="faults", storage=url).trials
    assert len(trials) == 40 and all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    ours = {t.number: t for t in rows(url, "faults")}
    assert sorted(ours) == sorted(t.number for t in trials)
    faulted = 0
    for trial in trials:
        row = ours[trial.number]
        expected = faulty_cpu.FAULTY.get(trial.params["variant"], "ok")
        assert row.status == expected, (trial.params, row.status, row.reason)
        assert (trial.state == TrialState.COMPLETE) == (expected == "ok")
        if expected != "ok":
            faulted += 1
            assert "died" in row.reason or "no result after" in row.reason
    assert faulted >= 5


def test_kill_9_then_the_same_command_continues(tmp_path):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    command = tuner_command(url, "killed", "--shape", "B=1,H=2,S=128,D=64", "--heartbeat", "1", "--seed", "4")
    process = subprocess.Popen([*command, "--trials", "500"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while stored(url, "killed") < 4 and process.poll() is None:
        time.sleep(0.3)
    process.send_signal(signal.SIGKILL)  # its in-flight trials stay RUNNING in the database
    process.wait()
    before = optuna.load_study(study_name="killed", storage=url).trials
    running = {t.number for t in before if t.state == TrialState.RUNNING}
    completed = {t.number for t in before if t.state == TrialState.COMPLETE}
    time.sleep(4)  # three missed heartbeats: the killed tuner's trials are now stale

    subprocess.run([*command, "--trials", "3"], check=True, capture_output=True)
    after = {t.number: t for t in optuna.load_study(study_name="killed", storage=url).trials}
    states = {n: t.state.name for n, t in after.items()}
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in after.values()), (states, running)
    assert all(after[n].state == TrialState.FAIL for n in running)
    retried = {t.system_attrs.get("failed_trial") for t in after.values()} - {None}
    assert running <= retried, "every trial in flight at the kill is retried once"
    ours = rows(url, "killed")
    assert len({t.number for t in ours}) == len(ours), "no trial stored twice"
    assert completed <= {t.number for t in ours if t.status == "ok"}, "no completed trial lost"


@pytest.mark.parametrize("db_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)
def test_two_tuners_on_one_study(db_url):
    commands = [tuner_command(db_url, "shared", "--shape", "B=1,H=2,S=128,D=64", "--trials", "5",
                              "--seed", str(seed)) for seed in (1, 2)]
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for c in commands]
    for process in processes:
        _, err = process.communicate()
        assert process.returncode == 0, err
    trials = optuna.load_study(study_name="shared", storage=db_url).trials
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials)))
    ours = rows(db_url, "shared")
    assert sorted(t.number for t in ours) == numbers
    assert sum(t.status != "invalid" for t in ours) == 10


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KiB file system, so the database fills it mid-run."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    require(mounted.returncode == 0, f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_is_a_clean_error_and_keeps_what_was_stored(small_disk):
    url = f"sqlite:///{small_disk / 'tuner.db'}"
    done = subprocess.run(tuner_command(url, "full", "--shape", "B=1,H=2,S=64,D=64", "--trials", "200"),
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "full" in last and "free disk space" in last, done.stderr
    assert rows(url, "full") is not None  # what was stored is still readable


def test_a_trial_asked_by_a_tuner_killed_before_its_first_heartbeat_is_retried(tmp_path, ray_session):
    """Optuna's stale check skips trials that never beat; the tuner fails and retries them."""
    from tuner.proposer import heartbeat_options, open_study

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    args = ["run", "--arch", "cpu", "--shape", "B=1,H=2,S=128,D=64", "--db", url, "--study", "orphan",
            "--heartbeat", "1", "--no-progress"]
    assert main([*args, "--trials", "2"]) == 0
    with Store.open(url) as store:
        study = open_study(store.optuna_storage(**heartbeat_options(1)), "orphan",
                           optuna.samplers.RandomSampler())
        orphan = study.ask().number  # RUNNING, and its tuner "dies" before any heartbeat
    time.sleep(3.5)  # past the grace period of three 1-second beats
    assert main([*args, "--trials", "1"]) == 0
    after = {t.number: t for t in optuna.load_study(study_name="orphan", storage=url).trials}
    assert after[orphan].state == TrialState.FAIL
    assert orphan in {t.system_attrs.get("failed_trial") for t in after.values()}
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in after.values())


def test_healthy_templates_render_the_fault_templates_sources():
    """A fault-free study compiles and times exactly what the fault study did, faults left out."""
    for backend in ("cpu", "cuda"):
        faulty = load_spec_file(str(TEMPLATES / f"faulty_{backend}.py"))
        healthy = load_spec_file(str(TEMPLATES / f"healthy_{backend}.py"))
        module = faulty_cpu if backend == "cpu" else faulty_cuda
        assert healthy.params[0].choices == tuple(v for v in module.VARIANTS if v not in module.FAULTY)
        problem = faulty.parse_problem(dict(kv.split("=") for kv in SETUPS[backend].shape.split(",")))
        for variant in healthy.params[0].choices:
            assert healthy.render({"variant": variant}, problem) == faulty.render({"variant": variant}, problem)


@pytest.mark.parametrize("rounds", [0, 64])
def test_the_c_fault_templates_healthy_variants_compute_2x_plus_1(rounds):
    spec = load_spec_file(str(TEMPLATES / "healthy_cpu.py"))
    ref = SpecRef(spec.name, "cpu", str(TEMPLATES / "healthy_cpu.py"))
    problem = spec.validate_problem({"n": 1001, "rounds": rounds})
    for variant in spec.params[0].choices:
        config = {"variant": variant}
        job = Job(trial_id=0, spec=ref, config=config, problem=problem, target=Target.documented("cpu"),
                  source=spec.render(config, problem), seed=5)
        measurement = measure_job(job, compile_job(job), TimingPolicy(budget_s=0.01))
        assert measurement.status is Status.OK and measurement.rel_l2 < 1e-7, (variant, measurement.reason)


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_the_bench_seeds_plant_a_quarter_of_faults(backend):
    """The seeds of bench/reliability.py give 10 planted faults in 40 proposals, as its files say."""
    setup = SETUPS[backend]
    spec = load_spec_file(str(TEMPLATES / f"faulty_{backend}.py"))
    faulty = faulty_cpu.FAULTY if backend == "cpu" else faulty_cuda.FAULTY
    proposed = []
    for turn, trials in enumerate(shares(setup.fault_trials, setup.turns)):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=setup.seed + turn),
                                    directions=["minimize", "minimize"])
        proposed += [study.ask(distributions(spec)).params["variant"] for _ in range(trials)]
    assert len(proposed) == 40 and sum(v in faulty for v in proposed) == 10


def test_the_reliability_bench_accounts_for_every_trial(tmp_path):
    """bench/reliability.py's fault section on a small CPU setup: 8 trials over two turns, with a crash
    and a hang among them, every one accounted for and labelled, the healthy medians compared."""
    # The hang floor far above a healthy trial's time on a busy machine: the hang still ends
    # labelled, and no healthy trial is mistaken for one.
    setup = replace(SETUPS["cpu"], shape="n=256", trial_timeout_s=20, turns=2, seed=4, fault_trials=8, clean_trials=6)
    table = fault_section(setup, f"sqlite:///{tmp_path / 'reliability.db'}")
    faults = table["studies"]["faulty"]
    assert faults["ok"] and table["studies"]["healthy"]["ok"], table
    assert faults["proposed"] == faults["accounted"] == faults["stored"] == 8 and faults["lost"] == 0
    assert faults["outcomes"]["oob_write"] == {"crashed": 2} and faults["outcomes"]["endless_loop"] == {"timeout": 1}
    assert "died" in faults["fault_reasons"]["oob_write crashed"]
    assert "no result after" in faults["fault_reasons"]["endless_loop timeout"]
    ratios = table["healthy_ratio_faulty_over_clean"]
    assert ratios and all(r["ratio"] > 0 and r["faulty_trials_us"] and r["clean_trials_us"] for r in ratios.values())
    assert set(table["slow_trial_share"]) == {"faulty", "healthy"}
    assert "| unroll8 |" in markdown(table) and table["environment"]["device"]
