"""Progress for long commands (sweeper/bars.py): a tqdm bar with an ETA on a terminal, plain
lines elsewhere, and training in chunks that changes nothing."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
import torch

from sweeper import bars
from trainers import names
from trainers.config import make_config
from trainers.members import Populations, make_members

ROOT = Path(__file__).resolve().parents[2]
SWEEPER = str(Path(sys.executable).parent / "sweeper")
TINY = {"dataset": "ring8", "loss": "wgan-gp", "steps": 30, "eval_every": 10, "hidden": 8,
        "depth": 2, "batch_size": 32, "eval_samples": 200, "device": "cpu"}


def test_eta_is_the_rate_so_far_times_the_work_left() -> None:
    p = bars.Progress(10, "x", initial=2, stream=io.StringIO(), tty=False)
    p._t0 = 100.0
    assert p.eta_seconds(101.0) is None  # nothing done in this process yet
    p.update_to(6)  # 4 units in 4 s; 4 units left
    assert p.eta_seconds(104.0) == pytest.approx(4.0)
    p.update_to(10)
    assert p.eta_seconds(110.0) == 0.0


def test_plain_lines_when_not_a_terminal(monkeypatch) -> None:
    monkeypatch.setattr(bars, "PLAIN_EVERY_S", 0.0)
    out = io.StringIO()
    with bars.Progress(4, "train wgan-gp", stream=out) as p:  # StringIO is not a tty
        p.update_to(2)
        p.write("a metrics line")
        p.update_to(4)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("train wgan-gp: 2/4 steps (50%), ")
    assert "elapsed, ETA " in lines[0]
    assert lines[1] == "a metrics line"
    assert lines[2].startswith("train wgan-gp: 4/4 steps (100%)")
    assert "ETA" not in lines[-1]  # nothing left
    assert lines[-1] == lines[-2]  # close repeats the final state once


def test_plain_lines_are_rate_limited(monkeypatch) -> None:
    monkeypatch.setattr(bars, "PLAIN_EVERY_S", 3600.0)
    out = io.StringIO()
    with bars.Progress(100, "x", stream=out) as p:
        for i in range(1, 101):
            p.update_to(i)
    assert out.getvalue().count("\n") == 1  # only the closing line


def test_a_terminal_gets_a_tqdm_bar_with_an_eta() -> None:
    out = io.StringIO()
    with bars.Progress(10, "train", stream=out, tty=True) as p:
        p.update_to(5)
        p.write("a metrics line")
        p.update_to(10)
    text = out.getvalue()
    assert "\r" in text and "ETA" in text and "10/10 steps" in text and "100%" in text
    assert "a metrics line\n" in text


def test_iterate_counts_items() -> None:
    out = io.StringIO()
    assert list(bars.iterate(iter("abc"), "jobs", stream=out)) == ["a", "b", "c"]
    assert out.getvalue().startswith("jobs: 3/3 runs (100%)")


@pytest.mark.parametrize("separate", [False, True])
def test_training_in_chunks_changes_nothing(separate: bool) -> None:
    torch.set_num_threads(1)
    cfgs = [make_config({**TINY, "seed": s}) for s in range(3)]

    def fresh():
        return Populations(cfgs) if separate else make_members(cfgs)

    plain = fresh()
    want = None
    while not plain.done or want is None:
        plain.train_until(plain.next_eval_step())
        want = plain.evaluate()
    chunked = fresh()
    seen = [m for _, m in bars.train_members(chunked, "t", chunks=30, stream=io.StringIO())]
    assert len(seen) == 3  # one per evaluation: steps 10, 20, 30
    timing = {names.TRAIN_SECONDS, names.EVAL_SECONDS}  # wall clocks, never equal
    assert [{k: v for k, v in m.items() if k not in timing} for m in seen[-1]] == \
        [{k: v for k, v in m.items() if k not in timing} for m in want]
    assert chunked.step == 30


def _run_on_a_pty(cmd: list[str], cwd: Path) -> tuple[int, str]:
    """Run `cmd` with stderr on a 120x40 pseudo-terminal; returns (exit code, what it showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the other end closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, cwd=cwd)
    os.close(slave)
    try:
        rc = p.wait(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    reader.join(timeout=10)
    os.close(master)
    return rc, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_sweeper_train_shows_a_bar_on_a_terminal_and_lines_in_a_log(tmp_path) -> None:
    args = [SWEEPER, "train", "--loss", "wgan-gp", "--steps", "200", "--eval-every", "100",
            "--hidden", "8", "--seeds", "2", "--no-track"]
    rc, shown = _run_on_a_pty(args, tmp_path)
    assert rc == 0, shown[-2000:]
    assert "\r" in shown and "train wgan-gp x2 seeds:" in shown
    assert "200/200 steps" in shown and "ETA" in shown  # 2 seeds: one population
    logged = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert logged.returncode == 0, logged.stderr[-2000:]
    assert "\r" not in logged.stderr
    assert "train wgan-gp x2 seeds: 200/200 steps (100%)" in logged.stderr
