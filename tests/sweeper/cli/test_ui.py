"""`sweeper ui`: a real `mlflow ui` on a real SQLite store, bound to 127.0.0.1, started and
stopped by PID; the link it prints opens the experiment's model-training runs view."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from sweeper.track import store, tags
from tests.procs import sweeper_ui
from tests.sweeper.tune.test_reliability import ENV, SWEEPER

pytestmark = pytest.mark.slow


def test_sweeper_ui_serves_the_store_and_links_to_the_runs_view(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    p = subprocess.run([SWEEPER, "train", "--smoke-test", "--tracking-uri", uri,
                        "--experiment", "ui-check"], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    c = store.client(uri)
    exp = c.get_experiment_by_name("ui-check")
    assert exp.tags[tags.TAG_EXPERIMENT_KIND] == tags.EXPERIMENT_KIND
    with sweeper_ui(tmp_path, uri, "ui-check", env=ENV) as (_, base, log):
        link = re.search(r"runs: (\S+)", log.read_text()).group(1)
        assert link == (f"{base}/#/experiments/{exp.experiment_id}/runs?"
                        "workflowType=machine_learning")
        api = (f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ui-check")
        with urllib.request.urlopen(api, timeout=10) as r:
            served = json.load(r)["experiment"]
        assert served["experiment_id"] == exp.experiment_id
        # A second UI on the same port is refused in one line, before starting anything.
        port = base.rsplit(":", 1)[1]
        again = subprocess.run([SWEEPER, "ui", "--tracking-uri", uri, "--port", port],
                               cwd=tmp_path, env=ENV, capture_output=True, text=True,
                               timeout=60)
        assert again.returncode == 2 and "is in use" in again.stderr
        assert again.stderr.count("\n") == 1
