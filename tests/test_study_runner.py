"""The study loop on its own: StudyRunner over a real store, Optuna study and in-process executor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from tests.db_fixtures import measurement
from tuner.db import Store
from tuner.kernel_templates import Target, load_spec_file
from tuner.pareto import non_dominated
from tuner.progress import RunProgress
from tuner.samplers import SamplerContext, make_sampler
from tuner.study import RunSettings, StudyRunner
from tuner.workers import SpecRef, Status, TimingPolicy
from tuner.workers.executor import LocalExecutor

# y = 2x + 1, unrolled; unroll=16 breaks the template's constraint and is never compiled.
TEMPLATE = '''
import numpy as np
from tuner.kernel_templates import KernelSpec, OutputSpec, Param, ProblemParam, Source

CODE = """
void affine(const float *x, float *y, long n) {
    long i = 0;
    for (; i + UNROLL <= n; i += UNROLL)
        for (int u = 0; u < UNROLL; ++u) y[i + u] = 2.0f * x[i + u] + 1.0f;
    for (; i < n; ++i) y[i] = 2.0f * x[i] + 1.0f;
}
"""

class Affine(KernelSpec):
    name = "affine"
    params = (Param("unroll", (1, 2, 4, 16)), Param("opt", ("-O1", "-O2")))
    problem_params = (ProblemParam("n", int, 1000, minimum=1),)

    def check(self, config, problem, device):
        return "unroll 16 is too much" if config["unroll"] == 16 else None

    def render(self, config, problem):
        return Source("c", f"#define UNROLL {config['unroll']}\\n" + CODE, "affine",
                      options=(config["opt"],), scalars=(("int64", problem["n"]),))

    def make_inputs(self, problem, rng):
        return {"x": rng.standard_normal(problem["n"], dtype=np.float32)}

    def output_spec(self, problem): return OutputSpec((problem["n"],), "float32")
    def reference(self, inputs, problem): return 2.0 * inputs["x"].astype(np.float64) + 1.0
    def flops(self, problem): return 2.0 * problem["n"]
    def bytes_moved(self, problem): return 8.0 * problem["n"]
'''
PROBLEM = {"n": 1000}
CPU = Target.documented("cpu")
VALID = 3 * 2  # the grid's configs that pass the constraint


@pytest.fixture
def template(tmp_path: Path) -> str:
    path = tmp_path / "affine.py"
    path.write_text(TEMPLATE)
    return str(path)


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(f"sqlite:///{tmp_path / 'tuner.db'}") as opened:
        yield opened


def run(store: Store, template: str, study: str = "s", sampler: str = "grid", **settings):
    spec = load_spec_file(template)
    executor = LocalExecutor(TimingPolicy(budget_s=0.005, min_repeats=3))
    target = executor.start(CPU)
    runner = StudyRunner(spec, SpecRef(spec.name, "cpu", template),
                         RunSettings(study_name=study, problem=PROBLEM, sampler=sampler,
                                     **{"seed": 1, "warm_start": False, **settings}),  # cold: reuse is the point
                         store, executor, target, RunProgress(None, Console(quiet=True), enabled=False),
                         make_sampler(sampler, SamplerContext(spec, PROBLEM, target.device, 1)))
    return runner.run(), target


def optuna_trials(store: Store, study: str):
    return optuna.load_study(study_name=study, storage=store.url).trials


def test_a_grid_run_stores_every_trial_once_and_tells_optuna(store, template):
    summary, _ = run(store, template, trials=None)
    assert (summary.proposed, summary.invalid, summary.measured, summary.ok) == (8, 2, VALID, VALID)
    ours = {t.number: t for t in store.trials(summary.study.id, limit=100).items}
    theirs = {t.number: t for t in optuna_trials(store, "s")}
    assert sorted(ours) == sorted(theirs) == list(range(8))
    for number, trial in theirs.items():
        row = ours[number]
        assert row.config == trial.params
        if row.status == Status.INVALID.value:
            assert trial.state == TrialState.FAIL and row.reason == "unroll 16 is too much"
            assert row.source_hash is None
        else:
            assert trial.state == TrialState.COMPLETE and trial.values == [row.median_s, row.rel_l2]


def test_the_stored_front_is_the_non_dominated_set_of_the_measured_trials(store, template):
    summary, _ = run(store, template, trials=None)
    measured = [t for t in store.trials(summary.study.id, limit=100).items if t.status == "ok"]
    mask = non_dominated(np.array([[t.median_s, t.rel_l2] for t in measured]))
    assert {t.number for t in store.front(summary.study.id)} == {
        t.number for t, on in zip(measured, mask, strict=True) if on}


def test_trials_counts_valid_proposals_and_the_constraint_rejects_before_compiling(store, template):
    summary, _ = run(store, template, sampler="random", trials=4)
    assert summary.proposed - summary.invalid == 4 and summary.ok == 4


def test_a_timeout_already_spent_proposes_nothing(store, template):
    summary, _ = run(store, template, trials=None, timeout_s=0.0)
    assert summary.proposed == 0 and optuna_trials(store, "s") == []


def test_a_config_measured_before_is_answered_with_its_whole_measurement(store, template):
    spec = load_spec_file(template)
    target = LocalExecutor(TimingPolicy()).start(CPU)
    config = {"unroll": 2, "opt": "-O2"}
    # stored by an earlier study, with an observer's metric that the answer must carry too
    earlier = store.ensure_study(name="earlier", kernel="affine", backend="cpu", template_path=template,
                                 problem=PROBLEM, arch="cpu", device_name=target.device.name,
                                 sampler="grid", directions=["minimize", "minimize"])
    stored = store.record_trial(earlier, 0, config, measurement(
        source_hash=spec.render(config, PROBLEM).digest(), environment=target.environment,
        extra={"power_w": 99.0}), None)

    summary, _ = run(store, template, study="later", trials=None)
    assert (summary.measured, summary.reused, summary.ok) == (VALID - 1, 1, VALID)
    answer = next(t for t in store.trials(summary.study.id, limit=100).items if t.config == config)
    assert answer.reused_from == stored.id and answer.reason == "answered from trial 0 of study earlier"
    assert answer.measurement == replace(stored.measurement, trial_id=answer.number, reason=answer.reason)
    assert answer.extra == {"power_w": 99.0}


def test_remeasure_measures_every_valid_config_again(store, template):
    run(store, template, study="first", trials=None)
    again, _ = run(store, template, study="again", trials=None, remeasure=True)
    assert (again.measured, again.reused) == (VALID, 0)


def test_every_trial_of_a_run_is_measured_on_the_inputs_of_one_seed(store, template, monkeypatch):
    """One seed for the run's inputs, not one per trial: its configs are verified on the same
    inputs, so their errors compare, and a measuring process draws them once (cuda_measure)."""
    seeds: list[int] = []
    submit = LocalExecutor.submit
    monkeypatch.setattr(LocalExecutor, "submit", lambda self, job: (seeds.append(job.seed), submit(self, job))[1])
    run(store, template, trials=None)
    assert len(seeds) == VALID and set(seeds) == {1}  # run() passes --seed 1
    seeds.clear()
    run(store, template, study="unseeded", trials=None, seed=None, remeasure=True)
    assert len(seeds) == VALID and set(seeds) == {0}
