"""The MLflow UI as a user sees it, in a real headless Chromium driven by Selenium.

A real smoke sweep writes a real SQLite store; `sweeper ui` serves it with a real `mlflow ui`
on 127.0.0.1 (started and stopped by its process group's PID); the browser opens the link the
sweep printed. That link opens the sweep's comparison view (sweeper/track/mlflow_view.py):
the trials alone, best first, with a parallel-coordinates chart of the swept params, and as
a table with the key metric columns. The plain runs page still lists the sweep's parent run,
expanding it shows the trials and a trial's seed runs, and a seed run's page lists its
sample-plot PNGs. Screenshots go to the test's tmp folder (and to $GAN_SWEEPER_SCREENSHOTS,
when set, which is how docs/img/ is made).

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and `selenium`
(dev extras).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sweeper.track import mlflow_view, store, tags
from sweeper.track.metric_keys import metrics_of
from tests.procs import sweeper_ui
from tests.sweeper.tune.test_reliability import ENV, SWEEPER, write_space
from trainers import names

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


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    """A small real sweep (5 settings of 3 params, 2 seeds, 120 steps, ASHA on); returns
    (tracking URI, experiment, printed link)."""
    tmp_path = tmp_path_factory.mktemp("web")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    space = write_space(tmp_path, steps=120, extra_params={
        "lr_g": {"log_uniform": [1e-4, 3e-3]}, "n_critic": {"int": [1, 5]}})
    p = subprocess.run([SWEEPER, "run", "--space", space, "--experiment", "web",
                        "--num-samples", "5", "--seeds", "2", "--sampler-seed", "3",
                        "--tracking-uri", uri, "--sweep-dir", str(tmp_path / "sweeps")],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    link = re.search(r"then open (http://127\.0\.0\.1:5000/\S+)", p.stdout)
    assert link, p.stdout[-2000:]
    return uri, "web", link.group(1)


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory, smoke_sweep):
    """`sweeper ui` on a free port (stopped by its group's PID after the tests); yields (base
    URL, the link it printed)."""
    uri, experiment, _ = smoke_sweep
    with sweeper_ui(tmp_path_factory.mktemp("ui"), uri, experiment, env=ENV) as (_, base, log):
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


def _sweep_runs(uri: str, experiment: str):
    """(client, experiment, every run, the sweep's parent run, its trial runs)."""
    c = store.client(uri)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id])
    kind = {r.info.run_id: r.data.tags.get(tags.TAG_KIND) for r in runs}
    (parent,) = [r for r in runs if kind[r.info.run_id] == "sweep"]
    return c, exp, runs, parent, [r for r in runs if kind[r.info.run_id] == "trial"]


def _body(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def test_the_printed_link_opens_the_ranked_trials_with_parallel_coordinates(
        browser, smoke_sweep, ui_server, tmp_path):
    uri, experiment, printed = smoke_sweep
    base, link = ui_server
    # The sweep's link is `sweeper ui`'s, on the default port; the test serves another.
    assert link == printed.replace("http://127.0.0.1:5000", base)
    assert "viewStateShareKey=gan-sweeper&compareRunsMode=CHART" in link
    c, exp, runs, parent, trials = _sweep_runs(uri, experiment)
    ranked = sorted(trials, key=lambda t: metrics_of(t).get(names.OBJECTIVE, math.inf))
    swept = mlflow_view.decode(exp.tags[mlflow_view.VIEW_TAG])["compareRunCharts"][0][
        "selectedParams"]
    assert len(trials) == 5 and set(swept) == {"gp_lambda", "lr_g", "n_critic"}
    assert names.OBJECTIVE in metrics_of(ranked[0])

    # Without a click: the charts, the parallel coordinates first, and the trials alone.
    browser.get(link)
    _wait(browser, lambda d: "Parallel Coordinates" in _body(d),
          "the parallel-coordinates chart")
    _close_assistant(browser)
    for t in trials:
        _link(browser, t.info.run_name)
    text = _body(browser)
    assert "5 matching runs" in text and "Sort: sweep/objective" in text
    assert parent.info.run_name not in text  # the trials view lists trials only
    assert text.index(ranked[0].info.run_name) < text.index(ranked[1].info.run_name)
    # The chart's axes are the swept params (drawn a moment after the card); then a chart
    # per key metric.
    for name in (*swept, "sweep/objective", "sweep/success_rate"):
        _wait(browser, lambda d, name=name: name in _body(d).split("Parallel Coordinates")[-1],
              f"{name} in the charts")
    time.sleep(1)  # let the charts settle
    _screenshot(browser, tmp_path, "mlflow-compare-charts.png")

    # The same view as a table: the key metric columns and the swept params.
    browser.get("about:blank")  # a fresh load applies the saved view again
    browser.set_window_size(2400, 800)  # the grid draws only the columns on screen
    browser.get(link.replace("compareRunsMode=CHART", "compareRunsMode=TABLE"))
    _link(browser, ranked[0].info.run_name)
    for column in ("sweep/objective", "sweep/success_rate", "sweep/hq_fraction_mean",
                   tags.TAG_STATUS, *swept):
        _wait(browser, lambda d, column=column: column in _body(d), f"the column {column}")
    _close_assistant(browser)
    time.sleep(1)
    _screenshot(browser, tmp_path, "mlflow-compare-table.png")


def test_the_runs_page_nests_trials_and_seeds_and_lists_plots(
        browser, smoke_sweep, ui_server, tmp_path):
    from selenium.webdriver.common.by import By

    uri, experiment, _ = smoke_sweep
    base, _ = ui_server
    c, exp, runs, parent, trials = _sweep_runs(uri, experiment)
    trial = next(t for t in trials if t.info.status == "FINISHED")
    seeds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == trial.info.run_id]
    assert len(trials) == 5 and len(seeds) == 2

    browser.get(store.runs_view_url(uri, exp.experiment_id, base, view=False))
    _link(browser, parent.info.run_name)  # the runs page lists the parent run...
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
    _wait(browser, lambda d: f"Trials of sweep '{experiment}', best first" in _body(d),
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
