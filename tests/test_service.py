"""tuner.service over a real Store (SQLite and PostgreSQL): listings, pages, fronts, best configs."""

from __future__ import annotations

import pytest

from tests.db_fixtures import measurement
from tuner.db import Store, StudyRecord
from tuner.enums import Status
from tuner.errors import UsageError
from tuner.kernel_templates import find_builtin
from tuner.service import NotFound, Service, problem_distance

SPEC = find_builtin("attention", "cpu")


def make_study(store: Store, name: str, **problem) -> StudyRecord:
    return store.ensure_study(name=name, kernel="attention", backend="cpu", template_path=None,
                              problem=SPEC.validate_problem(problem), arch="cpu", device_name="cpu",
                              sampler="tpe", directions=["minimize", "minimize"])


def add(store: Store, study: StudyRecord, number: int, latency: float | None, error: float | None,
        status: Status = Status.OK, **config) -> int:
    m = measurement(status=status, median_s=latency, rel_l2=error, source_hash=f"{study.name}{number}")
    return store.record_trial(study, number, {"block_m": 16, "exp": "libm"} | config, m, f"// {number}").id


@pytest.fixture
def service(store: Store) -> Service:
    return Service(store)


@pytest.fixture
def listed(store: Store) -> StudyRecord:
    """25 trials: latency falls with the number, every fifth failed to compile."""
    study = make_study(store, "listed")
    for n in range(25):
        if n % 5 == 4:
            add(store, study, n, None, None, Status.COMPILE_ERROR, block_m=64)
        else:
            add(store, study, n, (30 - n) * 1e-4, n * 1e-5, block_m=16 if n % 2 else 32)
    return study


def test_kernels_describe_the_builtin_templates(service):
    cpu = next(k for k in service.kernels() if (k.name, k.backend) == ("attention", "cpu"))
    assert [p.name for p in cpu.params] == [p.name for p in SPEC.params]
    assert {p.name: p.kind for p in cpu.problem_params}["causal"] == "bool"
    assert cpu.archs == ["cpu"]


def test_a_missing_study_or_trial_is_not_found(service, listed):
    with pytest.raises(NotFound, match="no study named 'nope'"):
        service.study("nope")
    with pytest.raises(NotFound, match="has no trial 99"):
        service.trial("listed", 99)


def test_trials_page_in_order_with_the_total(service, listed):
    page = service.trials("listed", offset=10, limit=5)
    assert (page.total, page.offset, page.limit) == (25, 10, 5)
    assert [t.number for t in page.items] == [10, 11, 12, 13, 14]


def test_trials_sort_by_latency_with_untimed_ones_last(service, listed):
    fastest = service.trials("listed", sort="latency", limit=3).items
    assert [t.number for t in fastest] == [23, 22, 21]
    slowest = service.trials("listed", sort="latency", descending=True, limit=25).items
    assert [t.number for t in slowest[:2]] == [0, 1] and slowest[-1].median_s is None


def test_trials_filter_by_status_error_and_config(service, listed):
    assert service.trials("listed", status="compile_error").total == 5
    assert service.trials("listed", max_error=5e-5).total == 5  # numbers 0, 1, 2, 3, 5
    odd = service.trials("listed", status="ok", params={"block_m": "16"})  # text, as from a URL
    assert [t.number for t in odd.items] == [1, 3, 5, 7, 11, 13, 15, 17, 21, 23]
    assert service.trials("listed", params={"block_m": 16, "exp": "libm"}).total == 10


@pytest.mark.parametrize("arguments, expected", [
    ({"sort": "colour"}, "cannot sort trials by 'colour'"),
    ({"params": {"tile": 8}}, "has no parameter 'tile'"),
    ({"limit": 0}, "limit >= 1"),
])
def test_bad_trial_queries_are_usage_errors(service, listed, arguments, expected):
    with pytest.raises(UsageError, match=expected):
        service.trials("listed", **arguments)


def test_the_front_and_a_trial_with_its_source(service, store, listed):
    page = service.trials("listed", status="ok", limit=100).items
    store.set_front(listed.id, [page[0].id, page[-1].id])
    assert [t.number for t in service.front("listed")] == [23, 0]
    detail = service.trial("listed", 23)
    assert detail.trial.on_front and detail.source == "// 23"


def test_best_is_the_fastest_within_the_error_bound(service, store):
    study = make_study(store, "s256", S=256)
    add(store, study, 0, 1e-3, 1e-6)
    add(store, study, 1, 5e-4, 1e-3)
    add(store, study, 2, 1e-4, None, Status.WRONG_RESULT)
    best = service.best(kernel="attention", arch="cpu", problem={"S": 256})  # defaults filled in
    assert (best.exact, best.distance, best.study, best.trial.number) == (True, 0.0, "s256", 1)
    assert best.problem == best.tuned_problem == SPEC.validate_problem({"S": 256})
    accurate = service.best(kernel="attention", arch="cpu", problem={"S": 256}, max_error=1e-5)
    assert accurate.trial.number == 0 and accurate.max_error == 1e-5
    assert accurate.device == "NVIDIA H100" and "host" not in accurate.software


def test_best_answers_from_the_nearest_tuned_problem(service, store):
    add(store, make_study(store, "s256", S=256), 0, 2e-3, 1e-6)
    add(store, make_study(store, "s1024", S=1024), 0, 1e-3, 1e-6)
    add(store, make_study(store, "causal", S=512, causal=True), 0, 1e-4, 1e-6)
    tie = service.best(kernel="attention", arch="cpu", problem={"S": 512})
    assert (tie.exact, tie.distance, tie.study) == (False, 1.0, "s1024")  # ties go to the faster
    far = service.best(kernel="attention", arch="cpu", problem={"S": 64, "D": 128})
    assert (far.distance, far.study, far.tuned_problem["S"]) == (3.0, "s256", 256)


@pytest.mark.parametrize("request_, expected", [
    (dict(problem={"S": 256}, max_error=1e-9), "within max_error 1e-09"),
    (dict(problem={"S": 256, "causal": True}), "or one like it"),
    (dict(problem={"S": 256}, arch="sm_90a"), "on arch sm_90a"),
])
def test_best_says_what_is_missing(service, store, request_, expected):
    add(store, make_study(store, "s256", S=256), 0, 2e-3, 1e-6)
    with pytest.raises(NotFound, match=expected):
        service.best(**({"kernel": "attention", "arch": "cpu"} | request_))


def test_best_refuses_an_invalid_problem(service):
    with pytest.raises(UsageError, match="S must be at least 1"):
        service.best(kernel="attention", arch="cpu", problem={"S": 0})


@pytest.mark.parametrize("asked, tuned, distance", [
    ({"S": 512, "dtype": "fp16"}, {"S": 512, "dtype": "fp16"}, 0.0),
    ({"S": 512, "D": 64}, {"S": 2048, "D": 128}, 3.0),
    ({"S": 512, "dtype": "fp16"}, {"S": 512, "dtype": "bf16"}, None),
    ({"S": 512, "causal": True}, {"S": 512, "causal": False}, None),
    ({"S": 512}, {"S": 512, "D": 64}, None),
])
def test_problem_distance(asked, tuned, distance):
    assert problem_distance(asked, tuned) == distance


def test_the_write_marker_changes_when_a_trial_is_stored(service, store):
    study = make_study(store, "s")
    before = service.write_marker()
    add(store, study, 0, 1e-3, 1e-6)
    after = service.write_marker()
    assert after != before and service.write_marker() == after
