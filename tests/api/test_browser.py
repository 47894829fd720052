"""The dashboard in headless Chromium: plots drawn, navigation, live updates, screenshots.

Screenshots go to $TUNER_SCREENSHOT_DIR when set (``TUNER_SCREENSHOT_DIR=docs`` refreshes the
committed ones), else to the test's temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.api import browser
from tests.api.conftest import PROBLEM, new_study, record, update_front
from tests.conftest import require
from tests.test_precision_front import store_mixed_study
from tuner.db import Store
from tuner.enums import Status
from tuner.kernel_templates import builtin_specs, registry


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the pages are the same over either database, and the API tests cover both."""
    return f"sqlite:///{tmp_path / 'tuner.db'}"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TUNER_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(driver, condition, timeout: float = 600):
    """Until ``condition`` holds: the timeout only ends a page that never gets there (a busy
    machine may take its time drawing)."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def test_dashboard_draws_navigates_and_updates_live(live_server: str, store: Store,
                                                    shots: Path) -> None:
    require(browser.available(), "no /usr/bin/chromium and /usr/bin/chromedriver: "
                                 "apt-get install chromium chromium-driver")
    with browser.chromium(height=1700) as driver:
        driver.get(f"{live_server}/")
        driver.save_screenshot(str(shots / "studies.png"))
        driver.find_element(By.LINK_TEXT, "small").click()

        wait_for(driver, lambda d: d.execute_script("return window.tunerReady === true"))
        # The three ok trials, front and the rest (failed trials have no point on the plot).
        assert driver.execute_script(browser.COUNT_POINTS, "pareto-plot") == 3
        rows = driver.find_elements(By.CSS_SELECTOR, "#trial-table tbody tr")
        assert len(rows) == 6
        driver.save_screenshot(str(shots / "study.png"))

        driver.execute_script("window.notReloaded = true")
        study = store.study("small")
        record(store, study, 6, {"block_n": 16, "exp": "poly3"}, Status.OK, 4e-4, 2e-4, PROBLEM)
        update_front(store, study)
        wait_for(driver, lambda d: d.execute_script(browser.COUNT_POINTS, "pareto-plot") == 4)
        wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#trial-table tbody tr")) == 7)
        assert driver.execute_script("return window.notReloaded === true")

        # No tuner at work: the page must not claim to refresh; a trial in flight, and it does.
        status = lambda d: d.find_element(By.ID, "live-status").text  # noqa: E731
        wait_for(driver, lambda d: "no trial running" in status(d))
        assert "refreshing" not in status(driver)
        tuner = optuna.create_study(storage=store.url, study_name="small", load_if_exists=True,
                                    directions=["minimize", "minimize"])
        tuner.ask()
        wait_for(driver, lambda d: "1 running · refreshing every" in status(d))

        driver.find_element(By.CSS_SELECTOR, '#trial-table tbody tr[data-number="1"] td.mono').click()
        wait_for(driver, lambda d: d.current_url.endswith("/studies/small/trials/1"))
        assert "Trial 1" in driver.find_element(By.TAG_NAME, "h1").text
        assert driver.find_elements(By.CSS_SELECTOR, "#source .highlight")
        driver.save_screenshot(str(shots / "trial.png"))


LINK = '<a href="https://evil.example/">x</a>'


def test_parameter_values_are_never_links_on_the_plots(live_server: str, store: Store) -> None:
    """A stored config value of markup is shown as text on the parameter plots' axes."""
    require(browser.available(), "no /usr/bin/chromium and /usr/bin/chromedriver: "
                                 "apt-get install chromium chromium-driver")
    record(store, store.study("small"), 6, {"accum": LINK}, Status.OK, 4e-4, 2e-4, PROBLEM)
    with browser.chromium() as driver:
        driver.get(f"{live_server}/studies/small")
        wait_for(driver, lambda d: d.execute_script("return window.tunerReady === true"))
        labels = driver.execute_script(
            "return [...document.querySelectorAll('#param-plots .xtick text')].map(t => t.textContent)")
        assert LINK in labels  # drawn, as the text it is
        links = driver.find_elements(By.CSS_SELECTOR, "#param-plots a")
        assert not [a.get_attribute("href") for a in links if "evil" in (a.get_attribute("href") or "")]


def test_a_study_over_two_families_filters_its_plots_and_trials_by_family(live_server: str, store: Store,
                                                                          monkeypatch) -> None:
    """Its trials' configs name their family (kernel_templates/testing/second_family.py is the second)."""
    require(browser.available(), "no /usr/bin/chromium and /usr/bin/chromedriver: "
                                 "apt-get install chromium chromium-driver")
    monkeypatch.setattr(registry, "BUILTIN_MODULES", registry.BUILTIN_MODULES + ("testing.second_family",))
    builtin_specs.cache_clear()
    try:
        study = new_study(store, "two-families", PROBLEM)
        for number, (family, median_s, rel_l2) in enumerate([("", 3e-4, 1e-6), ("", 5e-4, 1e-7), ("serial", 4e-4, 2e-6),
                                                            ("serial", 6e-4, 1e-5), ("serial", 7e-4, 2e-7)]):
            threads = {"threads": 1} if family else {}
            record(store, study, number, {"family": family, "block_n": 16 * (number + 1), **threads},
                   Status.OK, median_s, rel_l2, PROBLEM)
        update_front(store, study)
        with browser.chromium(height=1700) as driver:
            driver.get(f"{live_server}/studies/two-families")
            wait_for(driver, lambda d: d.execute_script("return window.tunerReady === true"))
            assert driver.execute_script(browser.COUNT_POINTS, "pareto-plot") == 5
            family = driver.find_element(By.CSS_SELECTOR, "#family-filter select")
            assert family.is_displayed()
            assert [o.text for o in family.find_elements(By.TAG_NAME, "option")][1:] == ["default", "serial"]
            family.find_element(By.XPATH, "option[text()='serial']").click()
            wait_for(driver, lambda d: d.execute_script(browser.COUNT_POINTS, "pareto-plot") == 3)
            # serial's own front: trials 2 (fastest) and 4 (most exact), not 3
            front = driver.execute_script("return document.getElementById('pareto-plot').data[1].customdata")
            assert sorted(front) == [2, 4]
            rows = lambda d: [r.get_attribute("data-number")  # noqa: E731
                              for r in d.find_elements(By.CSS_SELECTOR, "#trial-table tbody tr")]
            wait_for(driver, lambda d: rows(d) == ["2", "3", "4"])
            family.find_element(By.XPATH, "option[@value='']").click()
            wait_for(driver, lambda d: len(rows(d)) == 5 and d.execute_script(browser.COUNT_POINTS, "pareto-plot") == 5)
    finally:
        builtin_specs.cache_clear()


def test_the_front_marks_each_points_precision(live_server: str, store: Store) -> None:
    """A GEMM study of bf16 and e4m3 trials: one marker symbol per precision, named in the legend."""
    require(browser.available(), "no /usr/bin/chromium and /usr/bin/chromedriver: "
                                 "apt-get install chromium chromium-driver")
    study = store_mixed_study(store, "gemm-fp8")
    update_front(store, study)
    with browser.chromium() as driver:
        driver.get(f"{live_server}/studies/gemm-fp8")
        wait_for(driver, lambda d: d.execute_script("return window.tunerReady === true"))
        traces = driver.execute_script("return document.getElementById('pareto-plot').data.map("
                                       "t => [t.name, t.customdata || [], t.marker.symbol])")
        marked = {number: symbol for _, numbers, symbols in traces[:2]
                  for number, symbol in zip(numbers, symbols, strict=True)}
        # trials 0 and 1 bf16 (native), 2 and 3 e4m3, each faster or more exact than the others
        assert traces[1][1] == [2, 3, 0, 1]
        assert marked[0] == marked[1] != marked[2] == marked[3]
        legend = {name: symbol for name, _, symbol in traces[2:]}
        assert legend == {"precision native": marked[0], "precision e4m3": marked[2]}
