"""The server-rendered pages: content, escaping of planted markup, local assets only."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import PROBLEM, record
from tuner.db import Store
from tuner.enums import Status

EVIL = '<script>alert("x")</script>'


@pytest.fixture
def evil_client(client: TestClient, store: Store) -> TestClient:
    """A study whose device name and one config value are markup (names cannot hold it)."""
    problem = {**PROBLEM, "S": 128}
    study = store.ensure_study(name="evil", kernel="attention", backend="cpu", template_path=None,
                               problem=problem, arch="cpu", device_name=f"cpu{EVIL}",
                               sampler="tpe", directions=["minimize", "minimize"])
    record(store, study, 0, {"accum": EVIL}, Status.OK, 1e-3, 1e-5, problem)
    return client


def pages(client: TestClient) -> dict[str, str]:
    base = f"/studies/{quote('evil', safe='')}"
    return {path: client.get(path).text for path in ("/", base, f"{base}/trials/0")}


def test_planted_markup_is_escaped_everywhere(evil_client: TestClient) -> None:
    for path, html in pages(evil_client).items():
        assert EVIL not in html, path
        assert "&lt;script&gt;" in html, path
        # The only script elements are the page's own: its assets and its JSON config.
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'id="study-config"' in tag, (path, tag)


def test_pages_show_the_study_and_trial(client: TestClient) -> None:
    listing = client.get("/").text
    assert 'href="/studies/small"' in listing and 'href="/studies/big"' in listing
    study = client.get("/studies/small").text
    assert "attention" in study and 'id="pareto-plot"' in study and "study-config" in study
    trial = client.get("/studies/small/trials/1").text
    assert "poly3" in trial and 'class="highlight"' in trial and "ptxas info" in trial
    assert client.get("/studies/nope").status_code == 404


def test_every_asset_is_served_locally(client: TestClient) -> None:
    for path in ("/", "/studies/small", "/studies/small/trials/1", "/docs", "/redoc"):
        html = client.get(path).text
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not url.startswith(("http://", "https://", "//")) or url.startswith(
                "http://testserver/"), f"{path} loads {url} from elsewhere"
            if url.endswith((".js", ".css")):
                assert client.get(url).status_code == 200, url
