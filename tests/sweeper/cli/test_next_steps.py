"""What a user pastes next (issue "What a user sees, round 2", items 1, 3 and 6): after a
real smoke sweep in a plain shell whose PATH lacks the venv (as after `make run`), with a
non-default tracking store, every command the sweep and `sweeper stable` print runs as
printed; the sweep's sampler seed is drawn, printed at both ends and saved; the final table
says how many trials it leaves out."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from sweeper.tune.driver import OPTIONS_FILE, sweep_path
from tests.sweeper.tune.test_reliability import SWEEPER

pytestmark = pytest.mark.slow
VENV_BIN = str(Path(SWEEPER).parent)
# A plain shell: the venv's bin is not on PATH (`make run` calls .venv/bin/sweeper by path).
PLAIN = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
         "PATH": os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                 if p and Path(p).resolve() != Path(VENV_BIN).resolve())}


def shell(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=PLAIN, capture_output=True,
                          text=True, timeout=600)


def after(text: str, label: str) -> str:
    (line,) = [x for x in text.splitlines() if label in x]
    return line.split(label, 1)[1].strip().strip("`")


TINY = ("fixed: {dataset: ring8, steps: 20, eval_every: 10, eval_samples: 200, hidden: 8, "
        "depth: 1, batch_size: 32}\nparams: {gp_lambda: {log_uniform: [0.1, 100]}}\n")


def test_every_printed_next_step_runs_as_printed(tmp_path):
    # Three seeds at full budget, so `stable` ranks settings and prints every next step.
    (tmp_path / "tiny.yaml").write_text(TINY)
    p = subprocess.run([SWEEPER, "run", "--space", "tiny.yaml", "--experiment", "next",
                        "--num-samples", "2", "--seeds", "3", "--no-early-stop",
                        "--tracking-uri", "sqlite:///other.db"], cwd=tmp_path, env=PLAIN,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    seed = int(after(p.stderr, "sampler seed ").split(")", 1)[0])
    assert after(p.stdout, "Repeat this sweep:").startswith(f"--sampler-seed {seed} ")
    saved = json.loads((sweep_path(tmp_path / "sweeps", "next") / OPTIONS_FILE).read_text())
    assert saved["sampler_seed"] == seed

    stable = after(p.stdout, "Stable settings across seeds:")
    assert "--tracking-uri" in stable  # the non-default store, or it finds nothing
    program = shlex.split(stable)[0]  # the venv's sweeper by its path: not on PATH here
    assert program != "sweeper" and os.access(tmp_path / program, os.X_OK), program
    ui = after(p.stdout, "MLflow runs:").split("`", 1)[0]
    assert shlex.split(ui)[0] == program
    s = shell(stable, tmp_path)
    assert s.returncode == 0 and "Stable settings of sweep 'next'" in s.stdout, s.stderr
    # stable's own next steps, each pasted as printed.
    for label in ("the best setting as a config for `train`:", "a report with plots:",
                  "estimates):"):
        cmd = after(s.stdout, label)
        r = shell(cmd, tmp_path)
        assert r.returncode == 0, (cmd, r.stderr[-2000:])
    assert (tmp_path / "best.yaml").is_file()
    train = shell(f"{program} train --config best.yaml --no-track", tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]


def test_the_final_table_says_what_it_leaves_out(tmp_path):
    from sweeper.cli.main import TOP_ROWS

    space = tmp_path / "tiny.yaml"
    space.write_text(TINY)
    n = TOP_ROWS + 2
    p = subprocess.run([SWEEPER, "run", "--space", str(space), "--experiment", "many",
                        "--num-samples", str(n), "--seeds", "1", "--no-early-stop"],
                       cwd=tmp_path, env=PLAIN, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"The best {TOP_ROWS} of {n} trials above (all of them:" in p.stdout
