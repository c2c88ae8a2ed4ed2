"""Checkpoints someone else wrote (reliability round 3, rows 1, 2 and 7): loading one never
runs code from it, and a malformed one is one line naming the file, exit 2; inside a sweep, a
damaged trial checkpoint restarts its trial instead of failing it. Real files in the real
format (torch.save), a real `sweeper train` process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainers.config import make_config
from trainers.loop import Trainer
from trainers.members import POPULATION_FILE, save_members

SWEEPER = str(Path(sys.executable).with_name("sweeper"))
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
SMOKE = ["--smoke-test", "--no-track", "--dataset", "ring8", "--hidden", "8", "--depth", "1",
         "--batch-size", "16"]


class Planted:
    """torch.save pickles this; unpickling it runs `touch <marker>`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SWEEPER, "train", *SMOKE, *args], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=120)


def one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 2, p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, p.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def real_state(tmp_path: Path) -> dict:
    t = Trainer(make_config({"dataset": "ring8", "steps": 4, "hidden": 8, "depth": 1,
                             "batch_size": 16, "eval_every": 2}))
    t.train_until(2)
    return t.state_dict()


@pytest.mark.slow
def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"configs": [], "step": Planted(marker)}, tmp_path / "evil.pt")
    p = train(tmp_path, "--checkpoint", "evil.pt", "--resume")
    one_line_error(p, "evil.pt", "never loaded")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["configs-5", "step-abc", "no-step", "wrong-key",
                                    "not-a-dict", "truncated", "empty", "no-populations"])
def test_a_malformed_checkpoint_is_one_line_naming_the_file(tmp_path, damage):
    path = tmp_path / "bad.pt"
    state = real_state(tmp_path)
    if damage == "configs-5":
        state["configs"] = 5
    elif damage == "step-abc":
        state["step"] = "abc"
    elif damage == "no-step":
        del state["step"]
    elif damage == "wrong-key":
        g = state["G"]
        g["not_a_weight"] = g.pop(next(iter(g)))
    elif damage == "not-a-dict":
        state = [1, 2, 3]
    elif damage == "no-populations":
        state = {"populations": []}
    torch.save(state, path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "empty":
        path.write_bytes(b"")
    one_line_error(train(tmp_path, "--checkpoint", "bad.pt", "--resume"), "bad.pt")


@pytest.mark.slow
def test_a_pipe_as_checkpoint_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "fifo.pt")
    p = train(tmp_path, "--checkpoint", "fifo.pt", "--resume")  # timeout=120 would raise
    one_line_error(p, "fifo.pt", "not a regular file")


def test_a_real_checkpoint_still_loads_and_resumes(tmp_path):
    from trainers.members import load_members_file

    t = Trainer(make_config({"dataset": "ring8", "steps": 4, "hidden": 8, "depth": 1,
                             "batch_size": 16, "eval_every": 2}))
    t.train_until(2)
    t.save(tmp_path / "ok.pt")
    back = load_members_file(tmp_path / "ok.pt", device="cpu")
    assert back.step == 2
    back.train_until(4)
    t.train_until(4)
    for a, b in zip(t.G.parameters(), back.G.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_damaged_trial_checkpoint_restarts_the_trial(tmp_path, caplog):
    # Row 7: in a sweep, a checkpoint that cannot be read is treated like a missing one.
    from sweeper.tune.trial import _restore

    t = Trainer(make_config({"dataset": "ring8", "steps": 4, "hidden": 8, "depth": 1,
                             "batch_size": 16, "eval_every": 2}))
    t.train_until(2)
    save_members(t, tmp_path)
    whole = (tmp_path / POPULATION_FILE).read_bytes()
    (tmp_path / POPULATION_FILE).write_bytes(whole[: len(whole) // 3])
    with caplog.at_level("WARNING"):
        assert _restore(str(tmp_path), ["a"], 1, "cpu")[0] is None
    assert "starts over from step 0" in caplog.text
