"""Damaged stores, made for real on a finished sweep: an empty or garbage optuna.db, Tune's
experiment state deleted (with and without Ray's staging copy), bytes written into mlflow.db,
an mlflow.db in a read-only folder, and a start stopped before Tune saved anything. Each
answer is one line and exit 2, or a working resume."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sweeper.tune.driver import sweep_path
from tests.sweeper.tune.test_reliability import ENV, SWEEPER

pytestmark = pytest.mark.slow
NAME = "damaged"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished smoke sweep (2 settings x 2 seeds), copied by each test."""
    root = tmp_path_factory.mktemp("finished")
    p = subprocess.run([SWEEPER, "run", "--smoke-test", "--experiment", NAME], cwd=root,
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return root


@pytest.fixture
def sweep(finished, tmp_path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(finished, root)
    return root


def sweeper(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([SWEEPER, *args], cwd=root, env=env or ENV, capture_output=True,
                          text=True, timeout=300)


def one_line_error(p: subprocess.CompletedProcess, needle: str) -> None:
    assert p.returncode == 2, p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], p.stderr[-3000:]


def folder(root: Path) -> Path:
    return sweep_path(root / "sweeps", NAME)


def test_an_empty_study_is_named(sweep):
    (folder(sweep) / "optuna.db").write_bytes(b"")
    one_line_error(sweeper(sweep, "run", "--resume", "--experiment", NAME), "missing or empty")


def test_a_garbage_study_is_named_not_the_searcher_state(sweep):
    (folder(sweep) / "optuna.db").write_bytes(os.urandom(5000))
    p = sweeper(sweep, "run", "--resume", "--experiment", NAME)
    one_line_error(p, "optuna.db is damaged or not a database")
    assert "searcher-state" not in p.stderr


def test_deleted_tune_state_comes_back_from_rays_copy_or_is_named(tmp_path):
    # Its own sweep: Ray's staging copy names the folder the sweep ran in, not a copy of it.
    sweep = tmp_path / "own"
    sweep.mkdir()
    p = sweeper(sweep, "run", "--smoke-test", "--experiment", NAME)
    assert p.returncode == 0, p.stderr[-3000:]
    for f in folder(sweep).glob("experiment_state-*.json"):
        f.unlink()
    empty = tmp_path / "no-ray-copies"
    empty.mkdir()
    # Without Ray's staging copy (another machine, a cleaned /tmp): one line, nothing touched.
    p = sweeper(sweep, "run", "--resume", "--experiment", NAME,
                env={**ENV, "RAY_TMPDIR": str(empty)})
    one_line_error(p, "is missing and Ray keeps no copy")
    # With it (the driver ran on this machine): put back, and the finished sweep resumes.
    p = sweeper(sweep, "run", "--resume", "--experiment", NAME)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "restored experiment_state-" in p.stderr
    assert "driver died" not in p.stderr  # the old wording blamed a crash after a clean exit
    assert "2 trials." in p.stdout


def test_bytes_written_into_the_tracking_database(sweep):
    with (sweep / "mlflow.db").open("r+b") as f:
        f.seek(8192)  # inside a table page: the header still says SQLite
        f.write(os.urandom(100))
    one_line_error(sweeper(sweep, "stable", "--experiment", NAME),
                   "tracking database")


def test_a_start_stopped_before_tune_saved_anything_simply_starts_again(sweep):
    keep = {"sweep_options.json", "optuna.db", "tuner.pkl", ".validate_storage_marker"}
    for p in folder(sweep).iterdir():  # what a start leaves when stopped at once
        if p.name not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    one_line_error(sweeper(sweep, "run", "--resume", "--experiment", NAME),
                   "nothing to resume; run the same command without --resume")
    p = sweeper(sweep, "run", "--smoke-test", "--experiment", NAME)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "never got going; starting it again" in p.stderr


def test_a_tracking_database_in_a_read_only_folder_fails_before_ray(tmp_path):
    """Root ignores permission bits, so as root the folder is made immutable (chattr +i):
    nothing, root included, can create SQLite's journal beside the database."""
    ro = tmp_path / "ro"
    ro.mkdir()
    p = sweeper(tmp_path, "train", "--smoke-test", "--tracking-uri", f"sqlite:///{ro}/mlflow.db")
    assert p.returncode == 0, p.stderr[-3000:]  # a real MLflow database in it
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(ro)]).returncode:
            pytest.skip("root on a filesystem without chattr +i: no read-only folder here")
        undo = ["chattr", "-i", str(ro)]
    else:
        os.chmod(ro, 0o555)
        undo = ["chmod", "755", str(ro)]
    try:
        for args in (["train", "--smoke-test"], ["run", "--smoke-test"]):
            p = sweeper(tmp_path, *args, "--tracking-uri", f"sqlite:///{ro}/mlflow.db")
            one_line_error(p, "is read-only")
            assert "Token authentication" not in p.stderr  # refused before Ray started
    finally:
        subprocess.run(undo, check=True)
