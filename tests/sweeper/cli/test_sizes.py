"""Sizes that cannot fit (reliability round 3, row 6): every value in range, the product far
beyond the machine. Each is refused in one line naming the estimate, the limit and what to
lower, within seconds and before any weight is allocated; a real `sweeper` process."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from sweeper.tune.driver import sweep_path
from tests.sweeper.cli.test_hostile_files import ENV, SWEEPER, one_line, sweeper

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("args", [
    ["--hidden", "8192", "--depth", "16", "--seeds", "1000", "--steps", "10"],
    ["--hidden", "8192", "--depth", "16", "--seeds", "8", "--steps", "10"],
    ["--eval-samples", "1000000", "--seeds", "1000", "--steps", "10"],
], ids=["huge-x1000", "huge-x8", "eval-x1000"])
def test_train_refuses_what_cannot_fit(tmp_path, args):
    p, seconds = sweeper(tmp_path, "train", "--no-track", *args)
    one_line(p, "would need about", "GiB", "available RAM", "--seeds")
    assert seconds < 30  # nothing was allocated: the networks were built on the meta device


@pytest.mark.parametrize("space", [
    {"fixed": {"dataset": "ring8", "hidden": 8192, "depth": 16, "steps": 10},
     "params": {"gp_lambda": {"log_uniform": [0.1, 10]}}},
    {"fixed": {"dataset": "ring8", "steps": 10},
     "params": {"hidden": {"log_int": [8, 8192]}, "depth": {"int": [1, 16]}}},
], ids=["fixed", "sampled"])
def test_a_space_whose_largest_trial_cannot_fit_is_refused_before_ray(tmp_path, space):
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(space))
    p, seconds = sweeper(tmp_path, "run", "--space", "big.yaml", "--experiment", "big",
                         "--seeds", "3")
    one_line(p, "would need about", "hidden=8192", "depth=16", "space's sizes")
    assert seconds < 30
    assert not sweep_path(tmp_path / "sweeps", "big").exists()  # the name stays free


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs util-linux prlimit")
def test_running_out_of_memory_anyway_is_one_line(tmp_path):
    # The estimate lets this through (about 8 GiB for 8 members, less than this machine's
    # RAM); an address-space limit makes the allocation fail for real mid-way.
    p = subprocess.run(["prlimit", f"--as={6 << 30}", SWEEPER, "train", "--no-track",
                        "--hidden", "2048", "--depth", "8", "--seeds", "8", "--steps", "10"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    one_line(p, "out of memory", "--seeds")


def test_concurrent_trials_that_cannot_fit_together_are_refused(tmp_path):
    # Each trial alone fits; the trials the cluster would run at once do not.
    space = {"fixed": {"dataset": "ring8", "hidden": 1024, "depth": 4, "batch_size": 4096,
                       "steps": 10}, "params": {"gp_lambda": {"log_uniform": [1, 10]}}}
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump(space))
    p, _ = sweeper(tmp_path, "run", "--space", "wide.yaml", "--experiment", "wide",
                   "--seeds", "40")
    one_line(p, "a trial of 40 seeds", "would need about", "--max-concurrent")
    assert not sweep_path(tmp_path / "sweeps", "wide").exists()
