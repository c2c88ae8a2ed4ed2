"""Hostile files (reliability round 3, rows 9 and 10a/10b): every file input is checked for
what it is before it is read. A named pipe with no writer, an .npy whose header claims more
than the file holds or more than fits in memory, a config nested thousands deep or a
megabyte long, and damaged MNIST files are each one line and exit 2 within seconds: never a
hang, never a traceback. Real files in the real formats, a real `sweeper` process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SWEEPER = str(Path(sys.executable).with_name("sweeper"))
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

pytestmark = pytest.mark.slow


def sweeper(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    p = subprocess.run([SWEEPER, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                       timeout=60)  # a hang fails the test here
    return p, time.monotonic() - t0


def one_line(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    errors = [x for x in p.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, p.stderr[-2000:]
    for n in needles:
        assert n in errors[0], errors[0]


@pytest.mark.parametrize("args", [
    ["eval", "--dataset", "ring8", "--samples", "PIPE"],
    ["train", "--smoke-test", "--no-track", "--config", "PIPE"],
    ["run", "--smoke-test", "--space", "PIPE"],
    ["train", "--smoke-test", "--no-track", "--checkpoint", "PIPE", "--resume"],
    ["train", "--smoke-test", "--no-track", "--samples-out", "PIPE"],
    ["stable", "--experiment", "x", "--export", "PIPE"],
], ids=["samples", "config", "space", "checkpoint", "samples-out", "export"])
def test_a_named_pipe_is_refused_at_once(tmp_path, args):
    os.mkfifo(tmp_path / "fifo.yaml")
    p, seconds = sweeper(tmp_path, *[a.replace("PIPE", "fifo.yaml") for a in args])
    one_line(p, "fifo.yaml")
    assert "pipe" in p.stderr or "not a regular file" in p.stderr
    assert seconds < 30


def _npy_with_header(path: Path, shape: tuple, dtype: str = "<f4", data: bytes = b"") -> None:
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(data)


def test_an_npy_header_claiming_too_much_is_refused_before_reading(tmp_path):
    _npy_with_header(tmp_path / "huge.npy", (2 ** 64, 2), data=b"\0" * 64)
    p, _ = sweeper(tmp_path, "eval", "--dataset", "ring8", "--samples", "huge.npy")
    one_line(p, "huge.npy", "claims shape", "cut off or damaged")
    _npy_with_header(tmp_path / "short.npy", (1000, 2), data=b"\0" * 80)
    one_line(sweeper(tmp_path, "eval", "--dataset", "ring8", "--samples", "short.npy")[0],
             "holds 80 bytes of data")
    _npy_with_header(tmp_path / "objects.npy", (10, 2), dtype="|O")
    one_line(sweeper(tmp_path, "eval", "--dataset", "ring8", "--samples", "objects.npy")[0],
             "must hold numbers")


def test_samples_larger_than_memory_are_refused_without_reading_them(tmp_path):
    # A sparse file: it claims (and has) 1 TiB of float32 samples, with no disk behind them.
    from trainers.files import available_memory

    rows = (available_memory() // 8) + 1  # 2 float32 each: 8 bytes a row, more than fits
    path = tmp_path / "big.npy"
    _npy_with_header(path, (rows, 2))
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size + rows * 8)
    p, seconds = sweeper(tmp_path, "eval", "--dataset", "ring8", "--samples", "big.npy")
    one_line(p, "big.npy", "GiB available", "score a subset")
    assert seconds < 30


def test_a_deeply_nested_or_huge_config_is_one_line(tmp_path):
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    one_line(sweeper(tmp_path, "train", "--config", "deep.yaml", "--no-track")[0],
             "deep.yaml", "nested too deep")
    (tmp_path / "space.yaml").write_text("fixed: " + "{a: " * 4000 + "1" + "}" * 4000 + "\n")
    one_line(sweeper(tmp_path, "run", "--smoke-test", "--space", "space.yaml")[0],
             "space.yaml", "nested too deep")
    (tmp_path / "huge.yaml").write_text("# padding\n" * 200_000)
    one_line(sweeper(tmp_path, "train", "--config", "huge.yaml", "--no-track")[0],
             "huge.yaml", "more than the 1.0 MiB it may be")


def test_damaged_mnist_files_are_one_line_naming_the_folder(tmp_path):
    from tests.trainers.test_images import write_tiny_mnist

    root = tmp_path / "data"
    write_tiny_mnist(root, "MNIST")
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:100])  # cut off
    p, _ = sweeper(tmp_path, "train", "--dataset", "mnist", "--data-root", str(root),
                   "--smoke-test", "--no-track")
    one_line(p, "MNIST", "damaged")
