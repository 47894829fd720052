"""The server never runs template code: every route reads what it shows from the database.

A study names its template file; a file that does something observable when imported (writes
a marker file, calls sys.exit) must never be executed by any GET route of the app, whatever
the study's schema era (a space stored with it, or none, as upgraded from schema 0001).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import PROBLEM, record
from tuner.api import Settings, create_app
from tuner.db import Store
from tuner.enums import Status
from tuner.kernel_templates import find_spec, template_digest
from tuner.service import Service

API = "/api/v1"


def planted_template(folder: Path, marker: Path) -> Path:
    """A template that leaves ``marker`` behind if anything imports it, then exits."""
    path = folder / "planted_spec.py"
    path.write_text(f"import pathlib, sys\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                    f"sys.exit(3)\n")
    return path


def get_routes(routes, prefix: str = ""):
    """(path, methods) of every route, into included routers (FastAPI >= 0.165 keeps them
    apart as routers with a prefix) and older flat lists alike."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from get_routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif getattr(route, "path", None) is not None:
            yield prefix + route.path, getattr(route, "methods", None) or set()


def every_get(app) -> list[str]:
    """One URL per GET route of the app, with the planted study's name and trial 0."""
    urls = []
    for path, methods in get_routes(app.routes):
        if "GET" not in methods:
            continue
        url = path.replace("{name:path}", "planted").replace("{name}", "planted")
        url = url.replace("{number}", "0")
        if "{" in url:
            raise AssertionError(f"route {path} has a parameter this test does not fill")
        urls.append(url)
    return urls


QUERIES = {f"{API}/studies/planted/trials": "?param=exp=poly3&param=block_m=16&sort=latency",
           f"{API}/best": "?kernel=attention&arch=cpu",
           "/login": "?token=x"}


@pytest.mark.parametrize("space", [True, False], ids=["space-stored", "upgraded-from-0001"])
def test_no_route_imports_the_template_a_study_names(store: Store, tmp_path: Path, space: bool):
    marker = tmp_path / "imported"
    template = planted_template(tmp_path, marker)
    spec = find_spec("attention", "cpu")  # the planted study stores attention's space
    study = store.ensure_study(name="planted", kernel="attention", backend="cpu",
                               template_path=str(template), problem=PROBLEM, arch="cpu",
                               device_name="test cpu", sampler="tpe",
                               directions=["minimize", "minimize"],
                               space=spec.space() if space else None,
                               template_digest=template_digest(str(template)) if space else None)
    record(store, study, 0, {"exp": "poly3"}, Status.OK, 1e-3, 1e-5, PROBLEM)
    app = create_app(lambda: Service(store), Settings(best_recheck_s=0.0))
    with TestClient(app) as client:
        urls = every_get(app)
        assert len(urls) >= 12 and f"{API}/studies/planted/trials" in urls
        for url in urls:
            response = client.get(url + QUERIES.get(url, ""), follow_redirects=False)
            assert response.status_code < 500, (url, response.text)
            assert not marker.exists(), f"GET {url} ran the template"
        page = client.get(f"{API}/studies/planted/trials" + QUERIES[f"{API}/studies/planted/trials"])
        assert [t["number"] for t in page.json()["items"]] == [0]
        if space:  # the stored space types the filter and names the parameters
            refused = client.get(f"{API}/studies/planted/trials?param=nosuch=1")
            assert refused.status_code == 422 and "block_m" in refused.json()["detail"]
            assert client.get(f"{API}/studies/planted").json()["template_digest"] == \
                template_digest(str(template))

