"""The REST API over real SQLite and PostgreSQL databases filled through the Store."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import BASE_CONFIG, PROBLEM, record
from tuner.api import Settings, create_app, serve
from tuner.db import Store, StoreError
from tuner.enums import Status
from tuner.service import Service

API = "/api/v1"


def test_health_is_constant(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_kernels_list_their_parameter_spaces(client: TestClient) -> None:
    kernels = {k["name"] + "/" + k["backend"]: k for k in client.get(f"{API}/kernels").json()}
    cpu = kernels["attention/cpu"]
    assert {p["name"] for p in cpu["params"]} >= {"block_m", "block_n", "exp"}
    assert {p["name"]: p["kind"] for p in cpu["problem_params"]}["causal"] == "bool"
    assert cpu["space_size"] > 1


def test_studies_carry_problem_counts_and_best(client: TestClient) -> None:
    studies = {s["name"]: s for s in client.get(f"{API}/studies").json()}
    small = studies["small"]
    assert small["problem"] == PROBLEM and small["arch"] == "cpu"
    assert small["counts"] == {"ok": 3, "wrong_result": 1, "compile_error": 1, "invalid": 1}
    assert small["n_trials"] == 6 and small["best_latency_s"] == pytest.approx(1e-3)
    detail = client.get(f"{API}/studies/small").json()
    assert detail["best"]["number"] == 1


def test_front_is_the_non_dominated_trials_fastest_first(client: TestClient) -> None:
    assert [t["number"] for t in client.get(f"{API}/studies/small/front").json()] == [1, 0]


def test_points_are_the_measured_trials_as_columns(client: TestClient, store: Store) -> None:
    # An ok trial whose output was all NaN has an infinite error: it is no point on a plot.
    record(store, store.study("small"), 6, {"block_n": 16}, Status.OK, 4e-3, float("inf"), PROBLEM)
    points = client.get(f"{API}/studies/small/points").json()
    assert points["number"] == [0, 1, 2] and points["front"] == [0, 1]
    assert points["median_s"] == pytest.approx([2e-3, 1e-3, 3e-3])
    assert points["rel_l2"] == pytest.approx([1e-6, 1e-4, 1e-3])
    configs = [{name: points["values"][name][column[i]] for name, column in points["config"].items()}
               for i in range(3)]
    assert configs == [BASE_CONFIG, {**BASE_CONFIG, "exp": "poly3"}, {**BASE_CONFIG, "block_m": 8}]


@pytest.mark.parametrize(("query", "numbers", "total"), [
    ("limit=2", [0, 1], 6),
    ("limit=2&offset=4", [4, 5], 6),
    ("sort=latency&limit=3", [3, 1, 0], 6),
    ("sort=latency&descending=true&limit=1", [2], 6),
    ("status=ok", [0, 1, 2], 3),
    ("max_error=1e-4", [0, 1], 2),
    ("param=exp=poly3", [1], 1),
    ("param=block_m=8&status=ok", [2], 1),
    ("param=fast_math=true", [3], 1),
])
def test_trials_page_filter_and_sort(client: TestClient, query: str, numbers: list[int],
                                     total: int) -> None:
    page = client.get(f"{API}/studies/small/trials?{query}").json()
    assert [t["number"] for t in page["items"]] == numbers
    assert page["total"] == total


def test_one_trial_in_full_with_its_source(client: TestClient) -> None:
    trial = client.get(f"{API}/studies/small/trials/1").json()
    assert trial["config"] == {**BASE_CONFIG, "exp": "poly3"}
    assert trial["status"] == "ok" and trial["on_front"] is True
    assert trial["repeats"] == 50 and trial["q1_s"] < trial["median_s"] < trial["q3_s"]
    assert trial["resources"] == {"registers": 96} and trial["environment"]["cc"] == "gcc 12"
    assert "#define BLOCK_M 16" in trial["source"] and trial["log"]
    failed = client.get(f"{API}/studies/small/trials/4").json()
    assert failed["status"] == "compile_error" and failed["median_s"] is None and failed["reason"]


@pytest.mark.parametrize("path", ["/studies/nope", "/studies/nope/trials", "/studies/nope/points",
                                  "/studies/small/trials/99"])
def test_missing_things_are_404_with_a_message(client: TestClient, path: str) -> None:
    response = client.get(API + path)
    assert response.status_code == 404
    assert "nope" in response.json()["detail"] or "99" in response.json()["detail"]


def best(client: TestClient, query: str = "") -> tuple[int, dict]:
    response = client.get(f"{API}/best?kernel=attention&arch=cpu&{query}")
    return response.status_code, response.json()


def test_best_exact_with_provenance(client: TestClient) -> None:
    code, answer = best(client, "shape=S=256&shape=D=64")
    assert code == 200 and answer["exact"] is True and answer["distance"] == 0
    assert answer["config"] == {**BASE_CONFIG, "exp": "poly3"}
    assert answer["latency_s"] == pytest.approx(1e-3) and answer["note"] is None
    provenance = answer["provenance"]
    assert provenance["study"] == "small" and provenance["trial"] == 1
    assert provenance["device"] == "cpu" and "host" not in provenance["software"]


def test_best_respects_max_error(client: TestClient) -> None:
    code, answer = best(client, "max_error=1e-5")
    assert code == 200 and answer["provenance"]["trial"] == 0 and answer["rel_l2"] <= 1e-5


@pytest.mark.parametrize(("shape", "study", "tuned_s"), [("S=512", "small", 256), ("S=2048", "big", 1024)])
def test_best_answers_from_the_nearest_tuned_shape(client: TestClient, shape: str, study: str,
                                                   tuned_s: int) -> None:
    code, answer = best(client, f"shape={shape}")
    assert code == 200 and answer["exact"] is False and answer["distance"] == pytest.approx(1.0)
    assert answer["tuned_problem"]["S"] == tuned_s and answer["provenance"]["study"] == study
    assert "never tuned" in answer["note"]


def test_best_404_says_what_is_missing(client: TestClient) -> None:
    code, answer = best(client, "shape=causal=true")
    assert code == 404 and "attention" in answer["detail"] and "tuner run" in answer["detail"]
    code, answer = best(client, "max_error=1e-9")
    assert code == 404 and "max_error" in answer["detail"]


def test_best_cache_is_dropped_when_a_trial_is_written(client: TestClient, store: Store) -> None:
    assert best(client)[1]["provenance"]["trial"] == 1
    small = store.study("small")
    record(store, small, 6, {"block_n": 16, "exp": "poly3"}, Status.OK, 4e-4, 2e-4, PROBLEM)
    assert best(client)[1]["provenance"]["trial"] == 6


def test_best_cache_serves_without_asking_between_rechecks(store: Store) -> None:
    """With a long recheck interval a cached answer stands (the point of the cache)."""
    with TestClient(create_app(lambda: Service(store), Settings(best_recheck_s=3600))) as slow:
        assert best(slow)[1]["provenance"]["trial"] == 1
        record(store, store.study("small"), 6, {"block_n": 16}, Status.OK, 4e-4, 2e-4, PROBLEM)
        assert best(slow)[1]["provenance"]["trial"] == 1


@pytest.mark.parametrize("query", [
    "/best?kernel=attention", "/best?kernel=attention&arch=cpu&shape=S=abc",
    "/best?kernel=attention&arch=cpu&shape=S", "/best?kernel=attention&arch=cpu&shape=Q=1",
    "/best?kernel=attention&arch=cpu&max_error=-1", "/best?kernel=attention&arch=cpu&max_error=nan",
    "/best?kernel=%00&arch=cpu", "/studies/small/trials?sort=bogus", "/studies/small/trials?limit=0",
    "/studies/small/trials?limit=100000", "/studies/small/trials?status=bogus",
    "/studies/small/trials?param=nosuch=1", "/studies/small/trials?param=exp",
    "/studies/small/trials/-1", "/studies/small/trials/99999999999",
    "/studies/small/trials?param=unroll%22%29=1",  # reached SQLite's JSON path: was a 503
    "/best?kernel=mine&arch=cpu&shape=S%22%29=1", "/studies/a%01b", "/studies/" + "s" * 201,
])
def test_garbage_is_a_4xx_with_a_message(client: TestClient, query: str) -> None:
    response = client.get(API + query)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail  # one line, as documented


def test_the_schema_documents_422s_and_the_name_value_form(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            invalid = operation["responses"].get("422")
            if invalid is not None:
                assert invalid["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut"), path
    assert schema["components"]["schemas"]["ErrorOut"]["properties"]["detail"]["type"] == "string"
    for path, name in ((f"{API}/best", "shape"), (f"{API}/studies/{{name}}/trials", "param")):
        parameter = next(p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name)
        pattern = parameter["schema"]["items"]["pattern"]
        assert re.fullmatch(pattern, "S=256") and not re.fullmatch(pattern, "S") and not re.fullmatch(pattern, "=1")


def test_token_guards_everything_but_health(store: Store) -> None:
    app = create_app(lambda: Service(store), Settings(token="s3cret"))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        denied = client.get(f"{API}/studies")
        assert denied.status_code == 401 and "token" in denied.json()["detail"]
        assert client.get("/").status_code == 401
        assert client.get(f"{API}/studies", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get(f"{API}/studies", headers={"Authorization": "Bearer wrong"}).status_code == 401
        for document in ("/docs", "/redoc", "/openapi.json"):  # they show every route and schema
            assert client.get(document).status_code == 401, document
            assert client.get(document, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        client.get("/login?token=s3cret")
        assert client.get("/").status_code == 200
        assert client.get("/docs").status_code == 200  # the dashboard's cookie opens them too
    with TestClient(app) as client:  # the fast path of repeated best queries checks it too
        query = f"{API}/best?kernel=attention&arch=cpu"
        assert client.get(query, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get(query).status_code == 401


def test_serve_refuses_an_unreachable_database_without_showing_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        serve("postgresql+psycopg://tuner:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in str(caught.value) and "127.0.0.1" in str(caught.value)


def test_a_slash_inside_a_study_name_never_reads_another_study(client: TestClient, store: Store) -> None:
    """``small%2Ffront`` names a study "small/front", which the name rule forbids: it must not
    be answered as the front of ``small`` (routing sees the decoded path)."""
    for path in (f"{API}/studies/small%2Ffront", f"{API}/studies/small%2ftrials", "/studies/small%2Ffront"):
        response = client.get(path)
        assert response.status_code == 422 and "no '/'" in response.json()["detail"], path
    assert client.get(f"{API}/studies/small/front").status_code == 200
    with pytest.raises(StoreError, match="not allowed"):
        store.ensure_study(name="small/front", kernel="attention", backend="cpu",
                           template_path=None, problem=PROBLEM, arch="cpu", device_name="cpu",
                           sampler="tpe", directions=["minimize", "minimize"])
