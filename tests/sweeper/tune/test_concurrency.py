"""A --max-concurrent beyond what the cluster can run (reliability round 3, row 6).

Tune asks the searcher for a setting for every slot the limit allows before it starts any:
with a million slots no trial started in 150 s and the Optuna study filled with RUNNING
trials. The limit is clamped to what the cluster runs at once, said once, and TPE never has
more settings in flight than can train. A real local Ray, Optuna study and MLflow store."""

from __future__ import annotations

import os
import subprocess

import optuna
import pytest

from sweeper.tune.driver import sweep_path
from tests.sweeper.tune.test_reliability import ENV, SWEEPER, write_space

pytestmark = pytest.mark.slow


def test_a_huge_max_concurrent_is_clamped_and_the_sweep_runs(tmp_path):
    space = write_space(tmp_path, steps=30)
    p = subprocess.run(
        [SWEEPER, "run", "--space", space, "--experiment", "many", "--num-samples", "1000000",
         "--max-concurrent", "1000000", "--seeds", "1", "--budget-steps", "150",
         "--no-early-stop", "--sampler-seed", "0"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    fit = len(os.sched_getaffinity(0))  # a private local Ray has a CPU per core here
    said = [x for x in p.stderr.splitlines() if "--max-concurrent 1000000" in x]
    assert len(said) == 1 and f"running {fit} at a time" in said[0], p.stderr[-2000:]
    study = optuna.load_study(study_name="many", storage="sqlite:///" + str(
        sweep_path(tmp_path / "sweeps", "many") / "optuna.db"))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # The budget (150 steps = 5 trials of 30) ends the sweep; at most `fit` were in flight.
    assert len(done) >= 5 and len(study.trials) <= len(done) + fit, len(study.trials)
