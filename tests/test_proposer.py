"""Ask and tell over one Optuna study, on its own: states, reasons, grids, and dead tuners' trials."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuner.db import Store
from tuner.kernel_templates import Target, load_spec_file
from tuner.proposer import REASON_ATTR, Proposer, heartbeat_options, open_study
from tuner.samplers import SamplerContext, make_sampler

SPEC = load_spec_file(str(Path(__file__).resolve().parents[1] / "examples" / "softmax_spec.py"))
BEAT_S = 1.0  # stale after three missed beats
# Past the grace period of three beats by more than a second: Optuna stamps heartbeats, and reads
# the time it checks them against, with the database's CURRENT_TIMESTAMP, which SQLite keeps in
# whole seconds, so a beat made at 0.0 s is stale only once the clock reads 4.0 s, not 3.0 s.
STALE_AFTER_S = 3 * BEAT_S + 1.5


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(f"sqlite:///{tmp_path / 'tuner.db'}") as opened:
        yield opened


def proposer(store: Store, sampler: str = "random", name: str = "s") -> Proposer:
    storage = store.optuna_storage(**heartbeat_options(BEAT_S))
    study = open_study(storage, name, make_sampler(sampler, SamplerContext(SPEC, {}, Target("cpu"), seed=3)))
    return Proposer(study, storage, SPEC, BEAT_S,
                    unbeaten=lambda before: store.unbeaten_running_trials(name, before))


def trials(store: Store, name: str = "s") -> dict[int, optuna.trial.FrozenTrial]:
    return {t.number: t for t in optuna.load_study(study_name=name, storage=store.url).trials}


def test_asks_are_numbered_and_what_is_told_is_stored(store):
    tuner = proposer(store)
    asked = [tuner.ask() for _ in range(4)]
    assert [p.number for p in asked] == [0, 1, 2, 3] and tuner.in_flight == 4
    space = {p.name: p.choices for p in SPEC.params}
    assert all(set(p.config) == set(space) and all(p.config[k] in space[k] for k in space) for p in asked)
    tuner.tell(0, 1e-3, 1e-6)
    tuner.tell_failed(1, "compile failed: x" * 100)
    tuner.abandon_all("interrupted")
    stored = trials(store)
    assert stored[0].state == TrialState.COMPLETE and stored[0].values == [1e-3, 1e-6]
    assert stored[1].state == TrialState.FAIL and len(stored[1].user_attrs[REASON_ATTR]) == 500
    assert [stored[n].user_attrs[REASON_ATTR] for n in (2, 3)] == ["interrupted"] * 2
    assert tuner.in_flight == 0 and {p.number: p.config for p in asked} == {
        n: t.params for n, t in stored.items()}


def test_a_grid_is_exhausted_once_every_point_was_asked(store):
    tuner = proposer(store, "grid")
    points = set()
    for _ in range(SPEC.space_size()):
        assert not tuner.exhausted()
        proposal = tuner.ask()
        points.add(tuple(sorted(proposal.config.items())))
        tuner.tell(proposal.number, 1e-3, 0.0)
    assert tuner.exhausted() and len(points) == SPEC.space_size()
    assert not proposer(store, "random", name="other").exhausted()  # only a grid ends


def test_a_dead_tuners_trials_are_failed_and_retried_once_by_the_next(store):
    dead = proposer(store)
    asked = {p.number: p.config for p in (dead.ask(), dead.ask())}
    # a third asked straight from Optuna: its tuner died before its first heartbeat
    storage = store.optuna_storage()
    orphan = optuna.load_study(study_name="s", storage=storage).ask()
    asked[orphan.number] = orphan.params
    time.sleep(STALE_AFTER_S)  # the dead tuner beats no more

    tuner = proposer(store)
    assert tuner.waiting() == 3
    retried = [tuner.ask() for _ in range(3)]
    stored = trials(store)
    assert all(stored[n].state == TrialState.FAIL for n in asked)
    assert sorted(stored[p.number].system_attrs["failed_trial"] for p in retried) == sorted(asked)
    for p in retried:  # a retry proposes its failed trial's config again (the orphan had none)
        failed = stored[p.number].system_attrs["failed_trial"]
        assert p.config == asked[failed] or failed == orphan.number
    assert tuner.waiting() == 0


def test_a_study_whose_template_grew_a_choice_goes_on_in_its_continuation(store):
    """Optuna refuses to ask a parameter whose choices changed in a study that stored it (a GEMM
    study from before block_k gained 128 could not be tuned again): the run continues the study in
    one that holds its trials, numbered as they were, and asks the new choices there."""
    first = proposer(store)
    for _ in range(3):
        first.ask()
    first.tell(0, 1e-3, 1e-6)
    first.tell(1, 2e-3, 1e-6)
    first.tell_failed(2, "compile failed")
    grown = type("Grown", (type(SPEC),), {"params": tuple(
        replace(p, choices=(*p.choices, 16)) if p.name == "unroll" else p for p in SPEC.params)})()
    storage = store.optuna_storage(**heartbeat_options(BEAT_S))
    sampler = make_sampler("random", SamplerContext(grown, {}, Target("cpu"), seed=3))
    study = open_study(storage, "s", sampler, grown)
    before = trials(store)
    assert study.study_name.startswith("s@") and [t.number for t in study.trials] == [0, 1, 2]
    assert [(t.state, t.params, t.values) for t in study.trials] == [
        (before[n].state, before[n].params, before[n].values) for n in (0, 1, 2)]
    go_on = Proposer(study, storage, grown, BEAT_S, unbeaten=lambda t: store.unbeaten_running_trials("s", t))
    asked = [go_on.ask() for _ in range(30)]
    assert [p.number for p in asked] == list(range(3, 33)) and any(p.config["unroll"] == 16 for p in asked)
    assert open_study(storage, "s", sampler, grown).study_name == study.study_name  # found again, not made again
