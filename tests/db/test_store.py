"""Store writes and the lookups the tuner makes, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.db_fixtures import measurement
from tuner.db import FamilyFilter, Store, StoreError, StudyRecord, env_key
from tuner.enums import Status

PROBLEM = {"B": 1, "H": 4, "S": 256, "D": 64, "causal": False}


def make_study(store: Store, name: str = "attn", problem: dict | None = None,
               arch: str = "sm_90a") -> StudyRecord:
    return store.ensure_study(name=name, kernel="attention", backend="cuda", template_path=None,
                              problem=problem or PROBLEM, arch=arch, device_name="NVIDIA H100",
                              sampler="tpe", directions=["minimize", "minimize"])


def test_ensure_study_returns_the_same_study_again(store):
    first = make_study(store)
    again = make_study(store, problem=dict(reversed(PROBLEM.items())))  # same problem, other order
    assert again == first
    assert (first.kernel, first.backend, first.problem, first.arch) == (
        "attention", "cuda", PROBLEM, "sm_90a")
    assert first.created_at.tzinfo is not None


@pytest.mark.parametrize("change", [{"problem": PROBLEM | {"S": 512}}, {"arch": "sm_80"}])
def test_a_study_name_taken_by_another_problem_or_arch_is_refused(store, change):
    make_study(store)
    with pytest.raises(StoreError, match="already exists.*choose another --study name"):
        make_study(store, **change)


def test_a_trial_round_trips_every_measured_field(store):
    study = make_study(store)
    m = measurement(median_s=2e-3, rel_l2=3e-4)
    trial = store.record_trial(study, 7, {"block_m": 64, "precision": "exact"}, m, "__global__ void k() {}")
    assert (trial.study, trial.number, trial.status, trial.config) == (
        "attn", 7, "ok", {"block_m": 64, "precision": "exact"})
    timing = m.timing
    assert (trial.median_s, trial.q1_s, trial.q3_s, trial.min_s, trial.max_s, trial.mean_s,
            trial.repeats, trial.clock_mhz) == (timing.median_s, timing.q1_s, timing.q3_s,
                                                timing.min_s, timing.max_s, timing.mean_s,
                                                timing.repeats, timing.clock_mhz)
    assert (trial.rel_l2, trial.max_abs, trial.compile_time_s) == (m.rel_l2, m.max_abs, m.compile_time_s)
    assert (trial.resources, trial.environment, trial.log) == (m.resources, m.environment, m.log)
    assert trial.env_key == env_key(m.environment) and trial.source_hash == m.source_hash
    assert not trial.on_front and trial.reused_from is None


def test_a_failed_trial_keeps_its_reason_and_no_timing(store):
    study = make_study(store)
    m = measurement(status=Status.COMPILE_ERROR, median_s=None, rel_l2=None,
                    reason="compile failed: too many resources requested")
    trial = store.record_trial(study, 0, {"block_m": 128}, m, None)
    assert (trial.status, trial.reason, trial.median_s, trial.rel_l2) == (
        "compile_error", m.reason, None, None)
    assert store.study("attn").counts == {"compile_error": 1}


def test_recording_a_trial_number_twice_keeps_the_first(store):
    study = make_study(store)
    first = store.record_trial(study, 0, {"block_m": 64}, measurement(median_s=1e-3), "a")
    second = store.record_trial(study, 0, {"block_m": 128}, measurement(median_s=9e-3), "b")
    assert second == first
    assert store.study("attn").counts == {"ok": 1}


def test_a_source_is_stored_once_and_shown_with_each_trial(store):
    study = make_study(store)
    store.record_trial(study, 0, {"block_m": 64}, measurement(source_hash="h1"), "code one")
    store.record_trial(study, 1, {"block_m": 64}, measurement(source_hash="h1"), "code one")
    store.record_trial(study, 2, {"block_m": 128}, measurement(source_hash="h2"), None)
    assert store.trial(study.id, 1)[1] == "code one"
    assert store.trial(study.id, 2)[1] is None
    assert store.trial(study.id, 3) is None


def test_a_measurement_is_found_for_reuse_only_on_the_same_device_and_software(store):
    study = make_study(store)
    env = {"host": "node1", "device": "NVIDIA H100", "nvcc": "12.6"}
    original = store.record_trial(study, 0, {}, measurement(source_hash="h", environment=env), "c")
    store.record_trial(study, 1, {}, measurement(source_hash="h", environment=env), "c",
                       reused_from=original.id)

    def lookup(**changes):
        query = dict(kernel="attention", problem=PROBLEM, arch="sm_90a", source_hash="h",
                     env_key=env_key(env | {"host": "node2"})) | changes
        return store.find_measured(**query)

    assert lookup().id == original.id  # another host with the same device and software
    assert lookup(env_key=env_key(env | {"nvcc": "12.8"})) is None
    assert lookup(source_hash="other") is None
    assert lookup(problem=PROBLEM | {"S": 512}) is None
    assert lookup(arch="sm_80") is None
    assert store.trial(study.id, 1)[0].reused_from == original.id


def test_a_failed_measurement_is_never_reused(store):
    study = make_study(store)
    m = measurement(status=Status.WRONG_RESULT, source_hash="h")
    store.record_trial(study, 0, {}, m, "c")
    assert store.find_measured(kernel="attention", problem=PROBLEM, arch="sm_90a",
                               source_hash="h", env_key=env_key(m.environment)) is None


def test_the_front_is_replaced_and_read_fastest_first(store):
    study = make_study(store)
    trials = [store.record_trial(study, n, {"n": n}, measurement(median_s=(5 - n) * 1e-3), "c")
              for n in range(4)]
    store.set_front(study.id, [trials[0].id, trials[1].id])
    store.set_front(study.id, [trials[1].id, trials[3].id])
    assert [t.number for t in store.front(study.id)] == [3, 1]
    assert all(t.on_front for t in store.front(study.id))
    store.set_front(study.id, [])
    assert store.front(study.id) == []


def test_the_front_refuses_trials_of_another_study(store):
    other = make_study(store, name="other")
    foreign = store.record_trial(other, 0, {}, measurement(), "c")
    with pytest.raises(ValueError, match="not in study"):
        store.set_front(make_study(store).id, [foreign.id])


def test_front_candidates_are_the_ok_trials_with_latency_and_error(store):
    study = make_study(store)
    store.record_trial(study, 0, {}, measurement(), "c")
    store.record_trial(study, 1, {}, measurement(status=Status.TIMEOUT, median_s=None, rel_l2=None), None)
    store.record_trial(study, 2, {}, measurement(), "c")
    assert [t.number for t in store.study_trials_for_front(study.id)] == [0, 2]


def test_studies_count_trials_by_status_and_keep_the_best_latency(store):
    first = make_study(store, name="a")
    make_study(store, name="b")
    store.record_trial(first, 0, {}, measurement(median_s=3e-3), "c")
    store.record_trial(first, 1, {}, measurement(median_s=2e-3), "c")
    store.record_trial(first, 2, {}, measurement(status=Status.CRASHED, median_s=1e-4), None)
    found = {s.name: s for s in store.studies()}
    assert found["a"].counts == {"ok": 2, "crashed": 1} and found["a"].n_trials == 3
    assert found["a"].best_latency_s == pytest.approx(2e-3)
    assert found["b"].counts == {} and found["b"].best_latency_s is None
    assert store.study("missing") is None


def offer(store: Store, study: StudyRecord, number: int, median_s: float, rel_l2: float,
          source_hash: str | None = None) -> bool:
    trial = store.record_trial(study, number, {"n": number}, measurement(
        median_s=median_s, rel_l2=rel_l2, source_hash=source_hash or f"h{number}"), "c")
    return store.offer_to_front(study.id, trial)


def test_an_offered_trial_joins_the_front_and_evicts_what_it_dominates(store):
    study = make_study(store)
    assert offer(store, study, 0, 3e-3, 1e-6)
    assert offer(store, study, 1, 2e-3, 1e-5)  # faster, less exact: both stay
    assert not offer(store, study, 2, 4e-3, 1e-5)  # dominated by both
    assert offer(store, study, 3, 2e-3, 1e-5)  # equal to a member: equals do not dominate
    assert offer(store, study, 4, 1e-3, 1e-6)  # dominates every member
    assert [t.number for t in store.front(study.id)] == [4]


def test_a_source_measured_again_does_not_join_twice(store):
    study = make_study(store)
    assert offer(store, study, 0, 2e-3, 1e-6, source_hash="same")
    assert not offer(store, study, 1, 1e-3, 1e-6, source_hash="same")  # its first trial counts
    assert [t.number for t in store.front(study.id)] == [0]


def test_best_of_one_family_reads_the_config_s_family_and_the_default_s_unnamed_configs(store):
    study = make_study(store)
    configs = [({"family": "wgmma", "block_m": 128}, 1e-3), ({"family": "mma_sync", "block_m": 64}, 2e-3),
               ({"block_m": 32}, 3e-3)]  # stored before the kernel had families: the default's
    for number, (config, median_s) in enumerate(configs):
        store.record_trial(study, number, config, measurement(median_s=median_s, source_hash=f"{number}" * 64), "")
    best = {family: store.best_trial(kernel="attention", arch="sm_90a", problem=PROBLEM, family=family)
            for family in (None, FamilyFilter("wgmma"), FamilyFilter("mma_sync", unnamed=True),
                           FamilyFilter("mma_sync"), FamilyFilter("other"))}
    assert [t and t.number for t in best.values()] == [0, 0, 1, 1, None]
    store.record_trial(study, 3, {"block_m": 16}, measurement(median_s=1e-4, source_hash="3" * 64), "")
    unnamed = store.best_trial(kernel="attention", arch="sm_90a", problem=PROBLEM,
                               family=FamilyFilter("mma_sync", unnamed=True))
    assert unnamed.number == 3
    assert [t.best_latency_s for t in store.tuned_problems(kernel="attention", arch="sm_90a",
                                                           family=FamilyFilter("wgmma"))] == [1e-3]
