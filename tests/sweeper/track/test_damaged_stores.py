"""Damaged stores, made for real on a finished sweep: an empty or garbage optuna.db, Tune's
experiment state deleted, a hostile pickle planted in Ray's temp folder, bytes written into
mlflow.db, an mlflow.db in a read-only folder, and a start stopped before Tune saved anything.
Each answer is one line and exit 2, or a working resume."""

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


def test_deleted_tune_state_is_rebuilt_from_the_records_never_from_rays_temp_folder(
        tmp_path):
    # Its own sweep, so that Ray's staging copy in its temp folder names this very folder: it
    # used to be put back from there. That folder is shared by every local user (a pickle
    # planted there ran as whoever resumed) and can be newer than the folder the user
    # restored, so it is never read: the Optuna study and MLflow, which hold every finished
    # setting, are the truth the sweep is rebuilt from (row 8 of reliability round 3).
    sweep = tmp_path / "own"
    sweep.mkdir()
    p = sweeper(sweep, "run", "--smoke-test", "--experiment", NAME)
    assert p.returncode == 0, p.stderr[-3000:]
    table = sorted(x for x in p.stdout.splitlines() if x.startswith("| ") and "finished" in x)
    for f in folder(sweep).glob("experiment_state-*.json"):
        f.unlink()
    p = sweeper(sweep, "run", "--resume", "--experiment", NAME)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "experiment_state-*.json is missing; rebuilt from the Optuna study and MLflow" \
        in p.stderr and "2 settings ended and are kept" in p.stderr and "0 to run" in p.stderr
    assert "2 trials." in p.stdout
    # The same rows, read back from MLflow (rank, trial, values, params, run link).
    again = sorted(x for x in p.stdout.splitlines() if x.startswith("| ") and "finished" in x)
    assert again == table
    p = sweeper(sweep, "run", "--resume", "--experiment", NAME)  # and again: nothing changes
    assert p.returncode == 0 and "2 trials." in p.stdout, p.stderr[-3000:]


def test_a_pickle_planted_in_rays_temp_folder_never_runs(sweep, tmp_path):
    """Row 0 of reliability round 3, end to end: a hostile 'newer snapshot' of this sweep in
    the staging folder layout Ray uses, in a temp folder any local user can write, then a real
    --resume. It must neither run nor be used."""
    import json
    import tempfile

    from ray import cloudpickle

    # Short: Ray's unix socket paths under it must stay within 107 bytes.
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    marker = tmp_path / "pwned"

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    staged = ray_tmp / "ray" / "session_2099" / "artifacts" / "x" / folder(sweep).name / \
        "driver_artifacts"
    staged.mkdir(parents=True)
    later = "2099-01-01_00-00-00"
    (own,) = folder(sweep).glob("experiment_state-*.json")
    state = json.loads(own.read_text())
    (staged / f"experiment_state-{later}.json").write_text(json.dumps(state))
    for name in (f"searcher-state-{later}.pkl", f"search_gen_state-{later}.json"):
        (staged / name).write_bytes(cloudpickle.dumps(Planted()))
    try:
        p = sweeper(sweep, "run", "--resume", "--experiment", NAME,
                    env={**ENV, "RAY_TMPDIR": str(ray_tmp)})
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not marker.exists()
    assert "temp folder" not in p.stderr
    assert not list(folder(sweep).glob(f"*{later}*"))
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
