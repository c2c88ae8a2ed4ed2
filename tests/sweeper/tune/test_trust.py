"""Trust (reliability round 3, rows 3 and 4): a sweep's name never leads its files out of
--sweep-dir, and the private local Ray a sweep starts listens on 127.0.0.1 only. Real
processes: `sweeper run --smoke-test` with real Ray, Optuna and MLflow."""

from __future__ import annotations

import hashlib
import subprocess
import time

import psutil
import pytest

from sweeper.tune.driver import sweep_path
from tests.procs import stop_group
from tests.sweeper.tune.test_reliability import ENV, SWEEPER

HOSTILE = ["..", ".", "...", "a/../..", "../../etc", "/etc/passwd", "/", "", "a b", "a_b",
           "a/b", "a\\b", "ä", "é", "x" * 61, "x" * 60]


@pytest.mark.parametrize("name", HOSTILE)
def test_every_name_maps_to_one_folder_strictly_inside_the_sweep_dir(tmp_path, name):
    root = tmp_path / "sweeps"
    p = sweep_path(root, name)
    assert p.parent == root
    assert p.name not in ("", ".", "..") and "/" not in p.name
    assert p.resolve().parent == root.resolve()


def test_names_that_differ_only_in_removed_characters_never_share_a_folder(tmp_path):
    folders = {n: sweep_path(tmp_path, n) for n in HOSTILE}
    assert len(set(folders.values())) == len(HOSTILE), folders
    # A name spelled like another name's mapped folder keeps a folder of its own too.
    taken = sweep_path(tmp_path, "a b").name
    assert taken == "a_b-" + hashlib.sha1(b"a b").hexdigest()[:8]
    assert sweep_path(tmp_path, taken) != sweep_path(tmp_path, "a b")
    # Names that were already safe keep their folder (sweeps made before this still resume).
    assert sweep_path(tmp_path, "ring8-gp_v2.1").name == "ring8-gp_v2.1"


def _listeners(root: psutil.Process) -> dict[tuple[str, int], str]:
    found = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            name = p.name()
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    found[(c.laddr.ip, c.laddr.port)] = name
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.slow
def test_a_sweep_named_dotdot_writes_nothing_outside_its_sweep_dir_and_listens_on_loopback(
        tmp_path):
    """`--experiment ..` used to put the study, Tune state and trial folders into the parent
    of --sweep-dir; and the sweep's own Ray (GCS, raylet, workers, the driver) listened on all
    interfaces. Every listening socket of the driver and its children is sampled while the
    sweep runs."""
    work = tmp_path / "work"
    (work / "sweeps").mkdir(parents=True)
    proc = subprocess.Popen([SWEEPER, "run", "--smoke-test", "--experiment", "..",
                             "--sweep-dir", "sweeps"], cwd=work, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen: dict[tuple[str, int], str] = {}
    try:
        root = psutil.Process(proc.pid)
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            seen.update(_listeners(root))
            time.sleep(0.3)
        out, _ = proc.communicate(timeout=300)
    finally:
        stop_group(proc)
    assert proc.returncode == 0, out[-3000:]
    names = set(seen.values())
    assert {"gcs_server", "raylet"} <= names, seen  # the sampling saw Ray's servers
    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    outside = {k: v for k, v in seen.items() if k[0] not in loopback}
    assert not outside, outside
    # Everything the sweep wrote is in sweeps/, beside the tracking database and its artifacts.
    assert sorted(p.name for p in work.iterdir()) == ["mlflow.db", "mlruns", "sweeps"]
    (folder,) = (work / "sweeps").iterdir()
    assert folder == sweep_path(work / "sweeps", "..")
    assert (folder / "optuna.db").is_file()


@pytest.mark.slow
def test_a_recorded_ray_start_cluster_is_never_joined(tmp_path):
    """`ray.init()` without an address joins the cluster the machine's last `ray start`
    recorded (`<ray temp>/ray_current_cluster`): a live one would run the "private" sweep on
    someone else's cluster, and a stale one (its head killed without `ray stop`) hung the
    driver on a dead address for minutes. A sweep without --address starts its own Ray."""
    import shutil
    import tempfile
    from pathlib import Path

    from tests.procs import free_port

    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: unix socket paths
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
        p = subprocess.run([SWEEPER, "run", "--smoke-test", "--experiment", "own-ray"],
                           cwd=tmp_path, env={**ENV, "RAY_TMPDIR": str(ray_tmp)},
                           capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Failed to connect to GCS" not in p.stderr
