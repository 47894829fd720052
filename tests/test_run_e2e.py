"""`tuner run` end to end on real parts: Optuna, a real Ray, the C compiler, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import optuna
import pytest

from tuner.cli import main
from tuner.db import Store
from tuner.pareto import dominates
from tuner.service import Service

SHAPE = "B=1,H=2,S=128,D=64"
STUDY = "attention-cpu-B1-H2-S128-D64-causal0"


def tune(db: str, *extra: str) -> int:
    return main(["run", "--arch", "cpu", "--shape", SHAPE, "--db", db, "--no-progress", *extra])


@pytest.fixture(scope="module")
def tuned_sqlite(tmp_path_factory, ray_session) -> str:
    """One real 30-trial study, shared by the checks that only read it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('run') / 'tuner.db'}"
    assert tune(url, "--trials", "30", "--seed", "7") == 0
    return url


def test_front_is_real_and_non_dominated(tuned_sqlite):
    with Store.open(tuned_sqlite, create=False) as store:
        service = Service(store)
        front = service.front(STUDY)
        trials = service.trials(STUDY, status="ok", limit=1000).items
    assert len({(t.median_s, t.rel_l2) for t in front}) >= 2
    fastest, most_exact = front[0], min(front, key=lambda t: t.rel_l2)
    assert fastest.rel_l2 > most_exact.rel_l2 and fastest.median_s < most_exact.median_s
    on_front = {t.id for t in front}
    firsts, seen = [], set()  # a source measured twice counts once: its first trial
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.source_hash not in seen:
            seen.add(trial.source_hash)
            firsts.append(trial)
    assert on_front <= {t.id for t in firsts}
    for trial in firsts:
        point = np.array([trial.median_s, trial.rel_l2])
        dominated = any(dominates(np.array([o.median_s, o.rel_l2]), point) for o in firsts)
        assert dominated == (trial.id not in on_front), trial.number


def test_optuna_opens_the_study(tuned_sqlite):
    study = optuna.load_study(study_name=STUDY, storage=tuned_sqlite)
    assert len(study.trials) >= 30
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    assert study.metric_names == ["latency_s", "rel_l2"]  # optuna-dashboard's axis labels


def test_best_prints_a_config_within_the_bound(tuned_sqlite, capsys):
    capsys.readouterr()
    bound = 1e-5
    assert main(["best", "--arch", "cpu", "--shape", SHAPE, "--db", tuned_sqlite,
                 "--max-error", str(bound)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["rel_l2"] <= bound
    assert answer["provenance"]["study"] == STUDY and answer["exact"] is True


def test_studies_and_show_print_tables(tuned_sqlite, capsys):
    assert main(["studies", "--db", tuned_sqlite]) == 0
    assert main(["show", STUDY, "--db", tuned_sqlite]) == 0
    out = capsys.readouterr().out
    assert STUDY[:20] in out and "Pareto front" in out


@pytest.mark.postgres
def test_postgresql_run_stores_the_same_kind_of_results(pg_url, ray_session):
    assert tune(pg_url, "--trials", "12", "--seed", "7") == 0
    with Store.open(pg_url, create=False) as store:
        study = Service(store).study(STUDY)
        assert study.n_trials >= 12 and study.counts.get("ok", 0) >= 1
        assert Service(store).front(STUDY)
    assert len(optuna.load_study(study_name=STUDY, storage=pg_url).trials) >= 12


def test_same_study_resumes_the_trial_count(tmp_path, ray_session):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    assert tune(url, "--trials", "4", "--seed", "1", "--study", "resume") == 0
    assert tune(url, "--trials", "4", "--seed", "2", "--study", "resume") == 0
    numbers = sorted(t.number for t in optuna.load_study(study_name="resume", storage=url).trials)
    assert numbers == list(range(len(numbers))) and len(numbers) >= 8
    with Store.open(url, create=False) as store:
        assert Service(store).study("resume").n_trials == len(numbers)


def test_a_config_measured_before_is_answered_from_storage(tmp_path, ray_session, capsys):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    assert tune(url, "--trials", "6", "--seed", "3", "--sampler", "grid", "--study", "a") == 0
    assert tune(url, "--trials", "6", "--seed", "3", "--sampler", "grid", "--study", "b") == 0
    assert "6 answered from storage" in capsys.readouterr().out


def test_grid_search_walks_its_grid_once_then_stops(tmp_path, ray_session, capsys):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    example = str(Path(__file__).resolve().parents[1] / "examples" / "softmax_spec.py")
    args = ["run", "--arch", "cpu", "--template", example, "--shape", "rows=64,cols=256", "--sampler", "grid",
            "--seed", "1", "--db", url, "--study", "walk", "--no-progress"]
    assert main(args) == 0
    trials = optuna.load_study(study_name="walk", storage=url).trials
    points = {(t.params["unroll"], t.params["threads"], t.params["fast_math"]) for t in trials}
    assert len(trials) == len(points) == 3 * 2 * 2
    capsys.readouterr()
    assert main(args) == 0  # the grid is walked: nothing more to propose
    assert "0 trials proposed" in capsys.readouterr().out
    assert len(optuna.load_study(study_name="walk", storage=url).trials) == 12


def test_export_writes_json_and_header_with_the_best_config(tuned_sqlite, tmp_path, capsys):
    out_json, out_header = tmp_path / "best.json", tmp_path / "best.h"
    assert main(["export", "--db", tuned_sqlite, "--json", str(out_json), "--header", str(out_header)]) == 0
    assert main(["best", "--arch", "cpu", "--shape", SHAPE, "--db", tuned_sqlite]) == 0
    best = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    exported = json.loads(out_json.read_text())
    assert best["config"] in [entry["config"] for entry in exported["entries"]]
    assert "tuner_attention_cpu" in out_header.read_text()


def test_timeout_alone_bounds_a_run(tmp_path, ray_session):
    """With no --trials, the run ends, and proposed nothing once --timeout had passed (however
    long the machine then takes to finish the trials in flight)."""
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    assert tune(url, "--timeout", "8", "--study", "timed") == 0
    proposed = [t.datetime_start for t in optuna.load_study(study_name="timed", storage=url).trials]
    # The run's clock starts before its first proposal, so no proposal may come 8 s after that one.
    assert proposed and max(proposed) - min(proposed) <= timedelta(seconds=8)
    with Store.open(url, create=False) as store:
        assert Service(store).study("timed").n_trials == len(proposed)


def test_serve_refuses_a_bad_port(tuned_sqlite, capsys):
    assert main(["serve", "--db", tuned_sqlite, "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


def test_remeasure_measures_repeated_configs_again(tmp_path, ray_session, capsys):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    args = ["--trials", "8", "--sampler", "grid", "--study", "again", "--shape", "S=64"]
    assert tune(url, *args) == 0
    assert tune(url, *args, "--remeasure") == 0
    assert "8 measured, 0 answered from storage" in capsys.readouterr().out.replace("\n", " ")


LAZY_TEMPLATE = '''
import numpy as np
from tuner.kernel_templates import KernelSpec, OutputSpec, Param, ProblemParam, Source

class Lazy(KernelSpec):
    name = "lazy"
    params = (Param("unroll", (1, 2)),)
    problem_params = (ProblemParam("n", int, 1024, minimum=1),)

    def render(self, config, problem):
        return Source("c", "void lazy(const float *x, float *y, long n) {}  /* writes nothing */", "lazy",
                      options=("-O2", f"-DUNROLL={config['unroll']}"), scalars=(("int64", problem["n"]),))

    def make_inputs(self, problem, rng):
        return {"x": rng.standard_normal(problem["n"], dtype=np.float32)}

    def output_spec(self, problem): return OutputSpec((problem["n"],), "float32")
    def reference(self, inputs, problem): return inputs["x"].astype(np.float64)
    def flops(self, problem): return float(problem["n"])
    def bytes_moved(self, problem): return 8.0 * problem["n"]
'''


def test_a_run_where_no_trial_ran_correctly_exits_1(tmp_path, ray_session, capsys):
    template = tmp_path / "lazy.py"
    template.write_text(LAZY_TEMPLATE)
    code = main(["run", "--arch", "cpu", "--template", str(template), "--trials", "3", "--no-progress",
                 "--db", f"sqlite:///{tmp_path / 'tuner.db'}"])
    assert code == 1 and "no trial ran correctly" in capsys.readouterr().out
