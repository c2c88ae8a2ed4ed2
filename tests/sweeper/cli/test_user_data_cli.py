"""Your own images and arrays through the CLI as a user runs it: `sweeper train --dataset
folder:DIR` and `--dataset cifar10 --data-root DIR` log FID and coverage to a real MLflow store;
`sweeper eval` scores an array against an npy: set; bad data is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from sweeper.track.metric_keys import metrics_of
from tests.trainers.test_user_data import ring8, write_cifar, write_images
from trainers import names

SWEEPER = str(Path(sys.executable).with_name("sweeper"))
SMALL = ["--steps", "6", "--eval-every", "3", "--hidden", "4", "--batch-size", "8",
         "--n-critic", "1", "--loss", "wgan-gp"]


def sweeper(*args, cwd):
    return subprocess.run([SWEEPER, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def logged(tmp_path) -> dict[str, float]:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return metrics_of(run)


@pytest.mark.parametrize("kind", ["folder", "cifar10"])
def test_train_on_your_images_logs_fid_and_coverage(tmp_path, kind):
    if kind == "folder":
        write_images(tmp_path / "imgs", 24, size=(32, 32), mode="RGB")
        data = ["--dataset", "folder:imgs"]
    else:
        write_cifar(tmp_path / "data", per_batch=6)
        data = ["--dataset", "cifar10", "--data-root", "data"]
    p = sweeper("train", *data, *SMALL, "--eval-samples", "24", "--json", "--tracking-uri",
                f"sqlite:///{tmp_path}/mlflow.db", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    final = json.loads(p.stdout.strip().splitlines()[-1])
    got = logged(tmp_path)
    for key in (names.FID, names.KID, names.PRECISION, names.RECALL, names.DENSITY,
                names.COVERAGE, names.SEED_SCORE, names.SEED_SUCCESS):
        assert np.isfinite(final[key]) and got[key] == pytest.approx(final[key]), key
    assert final[names.STEP] == 6 and names.HQ_FRACTION not in final
    if kind == "folder":  # recorded absolute: `stable --confirm` may run from elsewhere
        client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
        (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert run.data.params["dataset"] == f"folder:{tmp_path.resolve()}/imgs"


def test_eval_scores_an_array_against_an_npy_set(tmp_path):
    np.save(tmp_path / "real.npy", ring8(3000, 0))
    np.save(tmp_path / "fake.npy", ring8(2500, 1, modes=range(4)))
    p = sweeper("eval", "--dataset", "npy:real.npy", "--samples", "fake.npy", "--json",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout)
    assert got[names.SEED_SUCCESS] == 0 and got[names.PRECISION] > 0.95
    assert 0.4 < got[names.COVERAGE] < 0.6  # half of the modes


@pytest.mark.parametrize("dataset, setup, words", [
    ("folder:nowhere", None, ["no such folder"]),
    ("npy:cube.npy", lambda d: np.save(d / "cube.npy", np.zeros((9, 2, 2))), ["N x D"]),
    ("cifar10", None, ["--data-root"]),
])
def test_bad_data_is_one_line_and_exit_2(tmp_path, dataset, setup, words):
    if setup:
        setup(tmp_path)
    p = sweeper("train", "--dataset", dataset, "--no-track", *SMALL, cwd=tmp_path)
    assert p.returncode == 2, p.stderr[-3000:]
    line = p.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and all(w in line for w in words), line


def test_datasets_lists_your_own_data():
    p = subprocess.run([SWEEPER, "datasets"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    assert "folder:PATH" in p.stdout and "npy:PATH" in p.stdout and "cifar10" in p.stdout


@pytest.mark.slow
def test_a_sweep_on_an_npy_set_is_judged_by_coverage_and_stable_says_so(tmp_path):
    """A real sweep (local Ray, Optuna, MLflow) on points without labelled modes: each trial
    logs the coverage aggregate, and `stable` states the coverage rule and its features."""
    import os

    import yaml

    np.save(tmp_path / "real.npy", ring8(3000, 0))
    space = {"fixed": {"dataset": f"npy:{tmp_path}/real.npy", "loss": "wgan-gp", "steps": 40,
                       "eval_every": 20, "eval_samples": 300, "hidden": 16, "depth": 2},
             "params": {"lr_d": {"log_uniform": [1e-4, 1e-2]}},
             "success": {"min_coverage_ratio": 0.6}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([SWEEPER, "run", "--space", "space.yaml", "--experiment", "u",
                        "--num-samples", "2", "--seeds", "2", "--no-early-stop",
                        "--sampler-seed", "0"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=900, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "coverage >= 0.6 x and precision >= 0.5 x the real data's own" in p.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("u")
    trials = client.search_runs([exp.experiment_id], "tags.gan_sweeper.kind = 'trial'")
    assert len(trials) == 2
    for run in trials:
        got = metrics_of(run)
        assert 0 <= got["coverage_mean"] <= 1 and 0 <= got["precision_mean"] <= 1
    p = subprocess.run([SWEEPER, "stable", "--experiment", "u"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "coverage >= 0.6 x and precision >= 0.5 x the real data's own (real half against " \
           "half), on raw coordinates" in p.stdout
    header = next(line for line in p.stdout.splitlines() if line.startswith("| flag |"))
    assert "| precision | score | FID | coverage |" in header and "HQ" not in header
