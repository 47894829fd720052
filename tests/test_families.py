"""One kernel, several families, one study; and H_kv, the problem parameter added after studies
were stored, reading those studies as before.

The second family is kernel_templates/testing/second_family.py (the CPU attention template with
its threads fixed at 1, registered for these tests): every config here is compiled by the C
compiler and run by the CPU worker.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tuner.api import create_app
from tuner.cli import main
from tuner.db import Store
from tuner.kernel_templates import StoredSpace, Target, kernel_spec
from tuner.kernel_templates.families import Families
from tuner.search_space import branches, config_of
from tuner.service import Service
from tuner.warm_start import admissible

SHAPE = "B=1,H=2,S=32,D=16"
MULTI = "attention-default+serial-cpu-B1-H2-S32-D16-causal0"
TUNED_DB = Path(__file__).resolve().parents[1] / "bench/results/attention_tuned.db.gz"
CPU = Target.documented("cpu")


def run(db: str, *extra: str) -> int:
    return main(["run", "--arch", "cpu", "--shape", SHAPE, "--no-progress", "--executor", "local", "--db", db,
                 "--seed", "1", *extra])


def test_configs_of_one_family_never_reach_the_others(two_cpu_families) -> None:
    spec = kernel_spec("attention", "cpu")
    assert isinstance(spec, Families) and spec.names() == ["default", "serial"]
    serial = spec.members["serial"]
    problem = spec.validate_problem({"S": 32, "D": 16})
    (_, default_free), (fixed, serial_free) = branches(spec)
    assert fixed == {"family": "serial"} and [p.name for p in serial_free][3] == "serial.threads"
    config = config_of(spec, {"family": "serial", **{p.name: p.choices[0] for p in serial_free}})
    assert config["family"] == "serial" and "serial.threads" not in config
    assert spec.check(config | {"threads": 2}, problem, CPU) is None  # serial's own check: threads unread
    assert spec.render(config, problem) == serial.render({k: v for k, v in config.items() if k != "family"}, problem)
    assert "no family 'wgmma'" in spec.check(config | {"family": "wgmma"}, problem, CPU)
    stored = spec.space()
    assert [p["name"] for p in stored["params"]] == ["family"]
    assert set(stored["families"]) == {"", "serial"} and stored["families"]["serial"]["params"][3]["choices"] == [1]
    # warm start: a config stored before the kernel had two families is the default family's
    legacy = {p.name: p.choices[0] for p in spec.members[""].params}
    assert admissible([legacy], spec, problem, CPU) == [{"family": "", **legacy}]
    assert admissible([legacy], serial, problem, CPU) == []


def test_one_study_searches_both_families_and_best_answers_across_them(two_cpu_families, tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    spec = kernel_spec("attention", "cpu")
    assert run(db, "--trials", "14") == 0
    capsys.readouterr()
    assert main(["studies", "--db", db]) == 0
    assert MULTI in capsys.readouterr().out
    store = Store.open(db, create=False)
    try:
        service = Service(store)
        study = service.study(MULTI)
        trials = service.trials(MULTI, limit=100).items
        assert {t.config["family"] for t in trials} == {"", "serial"}  # the stored trial says which ran
        for t in trials:
            own = {p.name for p in kernel_spec("attention", "cpu").members[t.config["family"]].params}
            assert t.config.keys() == own | {"family"}
        serial = service.trials(MULTI, params={"family": "serial"}).items
        assert serial and all(t.config["family"] == "serial" and t.config["threads"] == 1 for t in serial)
        # the study's stored space describes both families, for a server with no templates
        space = StoredSpace("attention", "cpu", study.space or {})
        assert set(space.families) == {"", "serial"} and space.space_size() == spec.space_size()
        best_trial = service.best(kernel="attention", arch="cpu", problem={"H": 2, "S": 32, "D": 16}).trial
        assert study.n_trials >= 14
    finally:
        store.close()
    assert main(["best", "--arch", "cpu", "--shape", SHAPE, "--db", db]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["provenance"]["study"] == MULTI and answer["config"] == best_trial.config
    # --family still runs one family, in a study of its own; best answers across both studies
    assert run(db, "--trials", "3", "--family", "serial") == 0
    capsys.readouterr()
    assert main(["studies", "--db", db]) == 0
    assert "attention-serial-cpu-B1-H2-S32-D16-causal0" in capsys.readouterr().out
    assert main(["best", "--arch", "cpu", "--shape", SHAPE, "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["latency_s"] <= answer["latency_s"]


def test_the_grid_sampler_asks_for_one_family(two_cpu_families, tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    assert run(db, "--sampler", "grid") == 2
    assert "walks one family's grid" in capsys.readouterr().err and not (tmp_path / "t.db").exists()


def test_grouped_query_attention_runs_end_to_end_on_the_cpu(tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    shape = "B=1,H=4,H_kv=2,S=24,D=8"
    assert main(["run", "--arch", "cpu", "--shape", shape, "--trials", "3", "--no-progress", "--executor", "local",
                 "--db", db, "--seed", "2"]) == 0
    capsys.readouterr()
    assert main(["best", "--arch", "cpu", "--shape", shape, "--db", db]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["exact"] and answer["problem"]["H_kv"] == 2
    assert answer["provenance"]["study"] == "attention-cpu-B1-H4-H_kv2-S24-D8-causal0"


@pytest.fixture(scope="module")
def tuned_db(tmp_path_factory) -> str:
    """The H100 tuning database (sm_90a), stored before H_kv existed."""
    path = tmp_path_factory.mktemp("db") / "attention_tuned.db"
    with gzip.open(TUNED_DB) as packed, path.open("wb") as out:
        shutil.copyfileobj(packed, out)
    return f"sqlite:///{path}"


def best(db: str, shape: str, capsys, *extra: str) -> dict:
    assert main(["best", "--arch", "sm_90a", "--shape", shape, "--db", db, *extra]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_studies_stored_before_h_kv_answer_as_before(tuned_db, tmp_path, capsys) -> None:
    shape = "B=16,H=8,S=512,D=64"
    stored = best(tuned_db, shape, capsys)
    assert stored["exact"] and stored["provenance"]["study"] == "attention-sm_90a-B16-H8-S512-D64-causal0-dtypefp16"
    assert "H_kv" not in stored["problem"]
    assert best(tuned_db, shape + ",H_kv=0", capsys) == stored
    assert best(tuned_db, shape + ",H_kv=8", capsys) == stored  # H_kv = H is multi-head attention
    near = best(tuned_db, "B=16,H=8,S=600,D=64", capsys)  # the nearest-problem rule still compares them
    assert not near["exact"] and near["tuned_problem"] == stored["problem"]
    with pytest.raises(AssertionError):  # grouped-query attention is another problem: not answered by these
        best(tuned_db, shape + ",H_kv=2", capsys)
    assert main(["export", "--db", tuned_db, "--json", str(tmp_path / "best.json"),
                 "--header", str(tmp_path / "best.h")]) == 0
    exported = json.loads((tmp_path / "best.json").read_text())
    entries = exported["entries"] if isinstance(exported, dict) else exported
    assert any(e["problem"] == stored["problem"] for e in entries)


def test_best_of_one_family(two_cpu_families, tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    assert run(db, "--trials", "14") == 0
    capsys.readouterr()
    for family in ("serial", ""):
        assert main(["best", "--arch", "cpu", "--shape", SHAPE, "--db", db, "--family", family]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["config"]["family"] == family and answer["provenance"]["study"] == MULTI
        if family == "serial":
            assert answer["config"]["threads"] == 1
    with Store.open(db, read_only=True) as store, TestClient(create_app(lambda: Service(store))) as client:
        for family in ("serial", ""):
            answer = client.get("/api/v1/best", params={"kernel": "attention", "arch": "cpu",
                                                        "shape": SHAPE.split(","), "family": family})
            assert answer.status_code == 200 and answer.json()["config"]["family"] == family
        unknown = client.get("/api/v1/best", params={"kernel": "attention", "arch": "cpu", "family": "nope"})
        assert unknown.status_code == 422 and "has no family 'nope' on cpu" in unknown.json()["detail"]


def test_best_of_the_default_family_takes_configs_stored_before_it_had_others(tuned_db, capsys) -> None:
    shape = "B=16,H=8,S=512,D=64"
    assert best(tuned_db, shape, capsys, "--family", "mma_sync") == best(tuned_db, shape, capsys)
    assert main(["best", "--arch", "sm_90a", "--shape", shape, "--db", tuned_db, "--family", "wgmma"]) != 0
    assert "no ok trial of family 'wgmma' of kernel 'attention' on arch sm_90a" in capsys.readouterr().err
    assert main(["best", "--arch", "sm_90a", "--shape", shape, "--db", tuned_db, "--family", "nope"]) == 2
    assert "has no family 'nope' on sm_90a (it has: mma_sync, wgmma)" in capsys.readouterr().err
