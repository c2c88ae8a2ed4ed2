"""Row 9 of reliability round 3: a user keeps a copy of a sweep folder and its MLflow store
after Ctrl-C, lets the resume finish, then puts the copies back and resumes again. The
sweep folder they restored is what the resume continues (a newer snapshot of the finished
session in Ray's temp folder used to override it, leaving a trial with no MLflow run and a
printed link to a run that did not exist): afterwards Optuna, MLflow and the printed table
agree, every setting once, every MLflow link real."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import optuna
import pytest

from sweeper.track import tags
from sweeper.track.metric_keys import metrics_of
from sweeper.tune.driver import sweep_path
from sweeper.tune.recovery import TUNE_TRIAL_ATTR
from tests.procs import stop_group
from tests.sweeper.tune.test_reliability import (
    ENV,
    SWEEPER,
    assert_no_duplicates,
    runs,
    wait_for,
    write_space,
)
from trainers import names

pytestmark = pytest.mark.slow
NUM = 4


def test_copies_put_back_after_a_finished_resume_are_what_resumes(tmp_path):
    name, db = "copied", tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    # One trial at a time, so when the first has finished and the Ctrl-C comes, three are
    # still to train (two at once at 400 steps: in CI the other three once all ended, pruned
    # at their first rung, within the poll that saw the first finish).
    space = write_space(tmp_path, steps=180)
    args = ["--space", space, "--experiment", name, "--num-samples", str(NUM), "--seeds", "1",
            "--max-concurrent", "1", "--sampler-seed", "2", "--tracking-uri", uri]
    proc = subprocess.Popen([SWEEPER, "run", *args], cwd=tmp_path, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for(lambda: any(r.data.tags.get(tags.TAG_STATUS) == "finished"
                             for r in runs(uri, name, "trial")), 300, "a finished trial", proc)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=180)
    finally:
        stop_group(proc)
    assert proc.returncode == 130
    folder = sweep_path(tmp_path / "sweeps", name)
    backup = tmp_path / "backup"
    shutil.copytree(folder, backup / "sweep")
    shutil.copy2(db, backup / "mlflow.db")

    resume = [SWEEPER, "run", "--resume", "--experiment", name]
    p = subprocess.run(resume, cwd=tmp_path, env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]

    shutil.rmtree(folder)  # the user puts the copies back
    shutil.copytree(backup / "sweep", folder)
    shutil.copy2(backup / "mlflow.db", db)
    p = subprocess.run(resume, cwd=tmp_path, env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "temp folder" not in p.stderr

    assert_no_duplicates(uri, name, NUM, 1)
    trials = {r.data.tags[tags.TAG_TRIAL]: r for r in runs(uri, name, "trial")
              if r.data.tags[tags.TAG_STATUS] != "abandoned"}
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'optuna.db'}")
    by_tune = {t.user_attrs.get(TUNE_TRIAL_ATTR): t for t in study.trials
               if not t.system_attrs.get("gan_sweeper_orphaned")}
    assert set(by_tune) == set(trials) and len(trials) == NUM
    for tid, r in trials.items():
        if names.OBJECTIVE in metrics_of(r):
            assert by_tune[tid].value == pytest.approx(metrics_of(r)[names.OBJECTIVE])
    # Every row of the printed table links a run that exists.
    rows = [x for x in p.stdout.splitlines() if x.startswith("| ") and "|---" not in x][1:]
    assert len(rows) == NUM, p.stdout
    ids = {r.info.run_id for r in runs(uri, name, "trial")}
    for row in rows:
        link = row.rstrip(" |").rsplit("|", 1)[-1].strip()
        assert link and any(i.startswith(link) for i in ids), row
