"""Bring your own GAN, end to end (issue 36): `sweeper train --model file.py:function` trains a
user's residual/LayerNorm model as one population whose member seed 1 is `--seed 1` alone; a
sweep with `model:` in its space runs, is interrupted, resumes from another folder, and shows
the model (and its file's SHA-1) in MLflow and `sweeper stable`; a bad model is one line
before anything trains. Real processes, real Ray, Optuna and MLflow."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from sweeper.track import tags
from tests.procs import stop_group
from tests.sweeper.tune.test_reliability import ENV, SWEEPER, runs, wait_for
from trainers import names
from trainers.user_models import source_digest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
SMALL = ["--dataset", "ring8", "--hidden", "16", "--depth", "2", "--batch-size", "32",
         "--steps", "30", "--eval-every", "15", "--eval-samples", "300", "--no-track"]


@pytest.fixture
def work(tmp_path) -> Path:
    shutil.copy(ROOT / "examples" / "resmlp.py", tmp_path / "my_gan.py")
    shutil.copy(ROOT / "tests" / "trainers" / "user_nets.py", tmp_path / "nets.py")
    return tmp_path


def sweeper(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([SWEEPER, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def test_a_user_model_trains_as_a_population_whose_members_are_single_runs(work):
    p = sweeper(work, "train", "--model", "my_gan.py:build", "--seeds", "3", "--json",
                "--samples-out", "pop.npy", *SMALL)
    assert p.returncode == 0, p.stderr[-3000:]
    pop = json.loads(p.stdout.strip().splitlines()[-1])
    q = sweeper(work, "train", "--model", "my_gan.py:build", "--seed", "1", "--json",
                "--samples-out", "one.npy", *SMALL)
    assert q.returncode == 0, q.stderr[-3000:]
    one = json.loads(q.stdout.strip().splitlines()[-1])
    (seed1,) = [s for s in pop["seeds"] if s["seed"] == 1]
    for key in (names.FID, names.HQ_FRACTION, names.GRAD_NORM, names.W_DISTANCE):
        assert seed1[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key
    np.testing.assert_allclose(np.load(work / "pop-seed1.npy"), np.load(work / "one.npy"),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec,needle", [
    ("nets.py:wrong_shape", "the generator maps [2, 16] noise to shape [2, 3]"),
    ("nets.py:nope", "has no function 'nope'"),
    ("missing.py:build", "does not exist"),
    ("nets.py:not_batchable", "cannot be batched as a population"),
])
def test_a_bad_model_is_one_line_before_anything_trains(work, spec, needle):
    for args in (["train", *SMALL[:-1]], ["run", "--smoke-test", "--space", "space.yaml"]):
        (work / "space.yaml").write_text(yaml.safe_dump(
            {"fixed": {"dataset": "ring8", "model": spec},
             "params": {"lr_g": {"log_uniform": [1e-4, 1e-3]}}}))
        p = sweeper(work, *args, "--model", spec) if args[0] == "train" else sweeper(work, *args)
        assert p.returncode == 2, p.stderr[-3000:]
        assert "Traceback" not in p.stderr
        errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and needle in errors[0], p.stderr[-3000:]
        assert "Token authentication" not in p.stderr  # refused before Ray started
        assert not (work / "mlflow.db").exists() or args[0] == "run"


def test_a_sweep_of_a_user_model_runs_resumes_elsewhere_and_shows_the_model(work, tmp_path):
    name, uri = "own-gan", f"sqlite:///{work}/mlflow.db"
    (work / "space.yaml").write_text(yaml.safe_dump({
        "fixed": {"dataset": "ring8", "model": "my_gan.py:build", "hidden": 16, "depth": 1,
                  "batch_size": 32, "steps": 60, "eval_every": 10, "eval_samples": 300},
        "params": {"lr_g": {"log_uniform": [1e-4, 1e-3]}}}))
    args = ["run", "--space", "space.yaml", "--experiment", name, "--num-samples", "3",
            "--seeds", "2", "--max-concurrent", "1", "--sampler-seed", "3", "--no-early-stop",
            "--tracking-uri", uri, "--sweep-dir", str(work / "sweeps")]
    proc = subprocess.Popen([SWEEPER, *args], cwd=work, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: any(r.data.tags.get(tags.TAG_STATUS) == "finished"
                             for r in runs(uri, name, "trial")), 300, "a finished trial", proc)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
    finally:
        stop_group(proc)
    assert proc.returncode == 130, out[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resume = ["run", "--resume", "--experiment", name, "--sweep-dir", str(work / "sweeps")]
    # An edited model file would mix two networks in one sweep: refused before any import.
    original = (work / "my_gan.py").read_text()
    (work / "my_gan.py").write_text(original + "\nraise SystemExit('imported')\n")
    p = sweeper(elsewhere, *resume)
    assert p.returncode == 2 and "the sweep started with SHA-1" in p.stderr, p.stderr[-3000:]
    assert "imported" not in p.stderr and "Traceback" not in p.stderr
    (work / "my_gan.py").write_text(original)
    p = sweeper(elsewhere, *resume, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    spec = f"{(work / 'my_gan.py').resolve()}:build"
    trial_runs = [r for r in runs(uri, name, "trial")
                  if r.data.tags.get(tags.TAG_STATUS) == "finished"]
    assert len(trial_runs) == 3
    for r in trial_runs + runs(uri, name, "seed"):
        assert r.data.params["model"] == spec
        assert r.data.params["model_sha1"] == source_digest(spec)
    s = sweeper(elsewhere, "stable", "--experiment", name, "--tracking-uri", uri,
                "--min-seeds", "2")
    assert s.returncode == 0, s.stderr[-3000:]
    assert f"Networks (model): {spec}." in s.stdout
    # --confirm imports the file the trials recorded, and only that version of it.
    confirm = ["stable", "--experiment", name, "--tracking-uri", uri, "--min-seeds", "2",
               "--confirm", "2", "--smoke-test"]
    (work / "my_gan.py").write_text(original + "\n# edited\n")
    c = sweeper(elsewhere, *confirm)
    assert c.returncode == 2 and "put that version back" in c.stderr, c.stderr[-3000:]
    (work / "my_gan.py").write_text(original)
    c = sweeper(elsewhere, *confirm)
    assert c.returncode == 0, c.stderr[-3000:]
