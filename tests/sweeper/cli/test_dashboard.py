"""`sweeper dashboard`: a real optuna-dashboard on a real sweep's Optuna study, bound to
127.0.0.1, answered over HTTP, stopped by its process group."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import psutil
import pytest

from benchmarks._procs import _popen, free_port, stop_group, wait_healthy
from sweeper.cli.main import main
from tests.sweeper.tune.test_reliability import ENV, SWEEPER

pytestmark = pytest.mark.slow


def test_dashboard_serves_the_sweeps_study_on_loopback(tmp_path):
    # An optional extra (`pip install 'gan-sweeper[dashboard]'`), absent from the offline
    # mirror `make test` installs from: this test runs where it is installed.
    pytest.importorskip("optuna_dashboard")
    p = subprocess.run([SWEEPER, "run", "--smoke-test", "--experiment", "dash"], cwd=tmp_path,
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    port, log = free_port(), tmp_path / "dashboard.log"
    proc = _popen([SWEEPER, "dashboard", "--experiment", "dash", "--port", str(port)], log,
                  ENV, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc, log, path="/api/studies")
        with urllib.request.urlopen(base + "/api/studies", timeout=10) as r:
            studies = json.load(r)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["dash"]
        assert "/dashboard/" in log.read_text()
        group = [q for q in psutil.process_iter() if q.pid == proc.pid or
                 proc.pid in [a.pid for a in q.parents()]]
        listening = [c.laddr.ip for q in group for c in q.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening and set(listening) == {"127.0.0.1"}, listening
        # A second one on the same port is one line, before anything starts.
        again = subprocess.run([SWEEPER, "dashboard", "--experiment", "dash", "--port",
                                str(port)], cwd=tmp_path, env=ENV, capture_output=True,
                               text=True, timeout=60)
        assert again.returncode == 2 and "is in use" in again.stderr
    finally:
        stop_group(proc)


def test_no_such_sweep_and_a_missing_package_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["dashboard", "--experiment", "nope"])
    assert e.value.code == 2 and "no sweep named 'nope'" in capsys.readouterr().err
    # optuna-dashboard is a dev dependency, so "not installed" cannot happen here for real:
    # the package lookup is what is faked, and only that.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna_dashboard" else real(name, *a))
    from sweeper.tune import driver

    folder = driver.sweep_path(tmp_path / "sweeps", "made")
    folder.mkdir(parents=True)
    (folder / driver.OPTIONS_FILE).write_text("{}")
    import optuna

    optuna.create_study(study_name="made", storage=f"sqlite:///{folder / 'optuna.db'}")
    with pytest.raises(SystemExit) as e:
        main(["dashboard", "--experiment", "made"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "pip install 'gan-sweeper[dashboard]'" in err
    assert err.count("\n") == 1
