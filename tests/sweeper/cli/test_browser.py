"""The MLflow UI as a user sees it, in a real headless Chromium driven by Selenium.

A real smoke sweep writes a real SQLite store; `sweeper ui` serves it with a real `mlflow ui`
on 127.0.0.1 (started and stopped by its process group's PID); the browser opens the link the
sweep printed, and checks that the model-training runs view lists the sweep's parent run,
that expanding it shows the trials and a trial's seed runs, and that a seed run's page lists
its sample-plot PNGs. Screenshots go to the test's tmp folder (and to
$GAN_SWEEPER_SCREENSHOTS, when set, which is how docs/img/ is made).

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and `selenium`
(dev extras).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sweeper.track import store, tags
from tests.procs import sweeper_ui
from tests.sweeper.tune.test_reliability import ENV, SWEEPER

pytestmark = pytest.mark.slow

WAIT_S = 90  # a 2-core machine under the rest of the suite renders the UI slowly


@pytest.fixture
def browser():
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        pytest.fail("the browser test needs Chromium: apt-get install chromium "
                    "chromium-driver (.ci/run does this when they are missing)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,800"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        yield driver
    finally:  # stops the chromedriver and Chromium this fixture started
        driver.quit()


@pytest.fixture
def smoke_sweep(tmp_path):
    """A 2-trial, 2-seed smoke sweep; returns (tracking URI, experiment, printed link)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    p = subprocess.run([SWEEPER, "run", "--smoke-test", "--experiment", "web", "--seeds", "2",
                        "--tracking-uri", uri, "--sweep-dir", str(tmp_path / "sweeps")],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    link = re.search(r"then open (http://127\.0\.0\.1:5000/\S+)", p.stdout)
    assert link, p.stdout[-2000:]
    return uri, "web", link.group(1)


@pytest.fixture
def ui_server(tmp_path, smoke_sweep):
    """`sweeper ui` on a free port (stopped by its group's PID after the test); yields (base
    URL, the link it printed)."""
    uri, experiment, _ = smoke_sweep
    with sweeper_ui(tmp_path, uri, experiment, env=ENV) as (_, base, log):
        yield base, re.search(r"runs: (\S+)", log.read_text()).group(1)


def _wait(driver, find, what: str):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S).until(lambda d: find(d))
    except WebDriverException as e:
        raise AssertionError(f"{what} did not show within {WAIT_S} s at {driver.current_url}; "
                             f"page text: {driver.find_element('tag name', 'body').text[:1500]}"
                             ) from e


def _link(driver, text: str):
    from selenium.webdriver.common.by import By

    return _wait(driver, lambda d: d.find_element(By.LINK_TEXT, text), f"run {text!r}")


def _expand(driver, run_name: str) -> None:
    """Click the +/- button in front of a run's name in the runs table."""
    from selenium.webdriver.common.by import By

    cell = _link(driver, run_name).find_element(
        By.XPATH, "./ancestor::span[contains(@class, 'ag-cell-value')][1]")
    cell.find_element(By.TAG_NAME, "button").click()


def _close_assistant(driver) -> None:
    from selenium.webdriver.common.by import By

    for b in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if b.is_displayed():
            b.click()


def _screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), "the screenshot was not written"
    assert path.stat().st_size > 10_000  # a rendered page, not an empty one
    if os.environ.get("GAN_SWEEPER_SCREENSHOTS"):
        out = Path(os.environ["GAN_SWEEPER_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / name)
    return path


def test_the_printed_link_opens_the_runs_view_with_trials_seeds_and_plots(
        browser, smoke_sweep, ui_server, tmp_path):
    from selenium.webdriver.common.by import By

    uri, experiment, printed = smoke_sweep
    base, link = ui_server
    # The sweep's link is `sweeper ui`'s, on the default port; the test serves another.
    assert link == printed.replace("http://127.0.0.1:5000", base)
    c = store.client(uri)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id])
    kind = {r.info.run_id: r.data.tags.get(tags.TAG_KIND) for r in runs}
    (parent,) = [r for r in runs if kind[r.info.run_id] == "sweep"]
    trials = [r for r in runs if kind[r.info.run_id] == "trial"]
    trial = next(t for t in trials if t.info.status == "FINISHED")
    seeds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == trial.info.run_id]
    assert len(trials) == 2 and len(seeds) == 2

    browser.get(link)
    _link(browser, parent.info.run_name)  # the runs view lists the parent run...
    assert "workflowType=machine_learning" in browser.current_url
    for t in trials:  # ...collapsed: its trials are not listed until it is expanded
        assert not browser.find_elements(By.LINK_TEXT, t.info.run_name)
    _expand(browser, parent.info.run_name)
    for t in trials:
        _link(browser, t.info.run_name)
    _expand(browser, trial.info.run_name)
    for s in seeds:
        _link(browser, s.info.run_name)
    _close_assistant(browser)
    time.sleep(1)  # let the table settle after the panel closes
    _screenshot(browser, tmp_path, "mlflow-runs-view.png")

    # The parent run's page shows the ranked table as its description.
    _link(browser, parent.info.run_name).click()
    _wait(browser, lambda d: f"Trials of sweep '{experiment}', best first" in
          d.find_element(By.TAG_NAME, "body").text,
          "the ranked table on the parent run's page")

    # A seed run's page lists its sample-plot PNGs under plots/.
    seed = seeds[0]
    pngs = [a.path for a in c.list_artifacts(seed.info.run_id, "plots")]
    assert pngs and all(p.endswith(".png") for p in pngs)
    browser.get(f"{base}/#/experiments/{exp.experiment_id}/runs/{seed.info.run_id}/artifacts")
    _wait(browser, lambda d: d.find_element(By.XPATH, "//*[text()='plots']"),
          "the plots/ folder").click()
    for p in pngs:
        name = p.rsplit("/", 1)[-1]
        _wait(browser, lambda d, name=name: d.find_element(By.XPATH, f"//*[text()='{name}']"),
              f"the artifact {name}")
    _screenshot(browser, tmp_path, "mlflow-seed-artifacts.png")
