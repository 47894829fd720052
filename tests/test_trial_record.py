"""The one trial record: a measurement round-trips through its row and record, and a metric
added to the measurement's open field reaches the API, the dashboard, export and `tuner best`
with no other change."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import PROBLEM, new_study, record
from tests.db_fixtures import measurement
from tuner.api import Settings, create_app
from tuner.cli import main
from tuner.db import Store
from tuner.db._models import Trial
from tuner.db._trials import MEASURED
from tuner.enums import Status
from tuner.export import write_exports
from tuner.service import Service
from tuner.workers.measurement import Measurement, Timing

OBSERVED = {"power_w": 312.5, "sm_clock_mhz": 1755, "ncu": "sm__throughput 81%"}


def test_every_value_of_a_measurement_has_its_column():
    assert set(MEASURED) == {f.name for f in fields(Measurement) if f.name not in ("trial_id", "timing")} | {
        f.name for f in fields(Timing)}
    assert set(MEASURED) <= set(Trial.__table__.columns.keys())


@pytest.mark.parametrize("timed", [True, False], ids=["ok", "failed"])
def test_a_measurement_round_trips_through_its_row_and_record(store: Store, timed: bool):
    study = new_study(store, "round-trip", PROBLEM)
    original = measurement(median_s=2e-3 if timed else None, rel_l2=3e-4 if timed else None,
                           status=Status.OK if timed else Status.CRASHED,
                           reason=None if timed else "the measuring process died",
                           extra=OBSERVED)
    stored = store.record_trial(study, 7, {"block_m": 64}, original, "code")
    assert stored.measurement == replace(original, trial_id=7)
    assert store.trial(study.id, 7)[0].measurement == stored.measurement
    assert Measurement.from_flat(7, stored.measurement.flat()) == stored.measurement
    # read flat as the schemas and templates read it
    assert (stored.status, stored.median_s, stored.extra) == (
        original.status.value, original.timing.median_s if timed else None, OBSERVED)


def test_a_trial_without_a_source_keeps_none(store: Store):
    study = new_study(store, "invalid", PROBLEM)
    rejected = Measurement(trial_id=0, status=Status.INVALID, source_hash=None, reason="too big")
    assert store.record_trial(study, 0, {}, rejected, None).measurement == rejected


def test_a_metric_in_the_open_field_reaches_every_reader(tmp_path: Path, capsys):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    with Store.open(url) as store:
        study = new_study(store, "observed", PROBLEM)
        stored = record(store, study, 0, {}, Status.OK, 1e-3, 1e-6, PROBLEM)
        store.offer_to_front(study.id, stored)
        # the same trial again, with an observer's metrics: trial 1 of the study
        observed = replace(stored.measurement, extra=OBSERVED)
        store.record_trial(study, 1, stored.config, observed, None)
        store.offer_to_front(study.id, store.trial(study.id, 1)[0])
        service = Service(store)
        with TestClient(create_app(lambda: service, Settings())) as client:
            trial = client.get("/api/v1/studies/observed/trials/1").json()
            listing = client.get("/api/v1/studies/observed/trials").json()
            page = client.get("/studies/observed/trials/1").text
            shape = [("shape", f"{k}={str(v).lower()}") for k, v in PROBLEM.items()]
            api_best = client.get("/api/v1/best", params=[("kernel", "attention"),
                                                          ("arch", "cpu"), *shape]).json()
        entries = write_exports(service, tmp_path / "best.json", None)
    assert trial["extra"] == OBSERVED and listing["items"][1]["extra"] == OBSERVED
    for name, value in OBSERVED.items():
        assert f"<th>{name}</th>" in page and str(value).replace("%", "") in page
    # trial 0 is the front's (its source came first); the best answer is its document
    assert api_best["provenance"]["trial"] == 0
    assert api_best["metrics"]["median_s"] == pytest.approx(1e-3)
    assert json.loads((tmp_path / "best.json").read_text())["entries"] == entries

    assert main(["best", "--arch", "cpu", "--db", url]) == 0
    assert json.loads(capsys.readouterr().out) == api_best == entries[0]


def test_the_best_document_carries_the_open_metrics(tmp_path: Path):
    with Store.open(f"sqlite:///{tmp_path / 'tuner.db'}") as store:
        study = new_study(store, "observed", PROBLEM)
        config = {"block_m": 16}
        trial = store.record_trial(study, 0, config, measurement(extra=OBSERVED), "code")
        store.offer_to_front(study.id, trial)
        answer = Service(store).best(kernel="attention", arch="cpu", problem=PROBLEM)
    document = answer.document()
    assert document["metrics"] == {**{name: getattr(trial, name) for name in (
        "median_s", "q1_s", "q3_s", "min_s", "max_s", "mean_s", "repeats", "clock_mhz",
        "rel_l2", "max_abs", "compile_time_s")}, **OBSERVED}
