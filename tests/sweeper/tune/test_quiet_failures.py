"""A tracking store that fails mid-sweep (reliability round 3, row 10): the SQLite file is
made immutable (`chattr +i`, which stops root too) while trials train and finish. MLflow logs
every failed write with a traceback; the sweep says one line per kind of failure instead, its
closing line says where the results wait and that `--resume` delivers them (exit 1, not 0),
and the resume, once the store works again, delivers every run exactly once."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from sweeper.track import tags
from tests.procs import stop_group
from tests.sweeper.tune.test_reliability import (
    ENV,
    SWEEPER,
    assert_no_duplicates,
    runs,
    wait_for,
    write_space,
)

pytestmark = pytest.mark.slow


def _chattr(flag: str, path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_a_store_failing_mid_sweep_is_one_line_and_the_resume_delivers(tmp_path):
    name, num = "ro-store", 6
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    space = write_space(tmp_path, steps=900, eval_every=100)
    log = tmp_path / "sweep.err"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [SWEEPER, "run", "--space", space, "--experiment", name, "--num-samples", str(num),
             "--seeds", "1", "--no-early-stop", "--sampler-seed", "0", "--tracking-uri", uri],
            cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=err, text=True,
            start_new_session=True)
        try:
            wait_for(lambda: any(r.data.tags.get(tags.TAG_STATUS) == "finished"
                                 for r in runs(uri, name, "trial")), 300,
                     "a finished trial", proc)
            if not _chattr("+i", db):
                pytest.skip("chattr +i is not available here (needs root on ext4/xfs)")
            try:
                proc.wait(timeout=600)  # the other trials finish while the store fails
            finally:
                _chattr("-i", db)
        finally:
            stop_group(proc)
    text = log.read_text()
    assert proc.returncode == 1, text[-3000:]
    assert "Traceback" not in text and len(text) < 8000, text[-3000:]
    said = [x for x in text.splitlines() if "the tracking store failed (" in x]
    kinds = {x.split("the tracking store failed (", 1)[1].split(")", 1)[0] for x in said}
    assert said and len(said) == len(kinds), said  # one line per kind of failure
    (closing,) = [x for x in text.splitlines() if x.startswith("error: ")]
    assert "could not reach the tracking store" in closing
    assert f"sweeper run --resume --experiment {name}" in closing and "unsent" in closing

    p = subprocess.run([SWEEPER, "run", "--resume", "--experiment", name], cwd=tmp_path,
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "delivered" in p.stderr
    assert_no_duplicates(uri, name, num, 1)
    for r in runs(uri, name, "trial") + runs(uri, name, "seed") + runs(uri, name, "sweep"):
        assert r.data.tags[tags.TAG_STATUS] == "finished" and r.info.status == "FINISHED"
