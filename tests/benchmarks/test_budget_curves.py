"""benchmarks/budget_curves.py end to end on its --smoke-test path: the table, the plot and
the shared cache with benchmarks/mode_coverage.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_smoke_writes_one_cell_per_budget_and_a_plot(tmp_path: Path) -> None:
    png, cache = tmp_path / "curves.png", tmp_path / "cache"
    res = _run("benchmarks.budget_curves", "--smoke-test", "--datasets", "ring8",
               "--recommended", str(ROOT / "benchmarks/recommended/ring8-wgan-gp-quality.yaml"),
               "--plot", str(png), "--cache", str(cache))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| row | 5 steps | 10 steps |" in res.stdout
    cell = r"[\d.]+ ± [\d.]+ modes, HQ [\d.]+ ± [\d.]+%, \d/2 succeed \[[\d.]+, [\d.]+\]"
    labels = re.findall(rf"^\| ([a-z0-9, ()-]+) \| {cell} \| {cell} \|$", res.stdout, re.M)
    assert labels == ["wgan-gp", "wgan-gp, sweep-recommended (ring8-wgan-gp-quality)"]
    assert "(8 runs, 8 trained now, 0 from --cache;" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # the 10-step point is the mode-coverage table's own runs: same protocol, same cache key
    table = _run("benchmarks.mode_coverage", "--smoke-test", "--datasets", "ring8",
                 "--losses", "wgan-gp", "--cache", str(cache))
    assert table.returncode == 0, table.stderr[-2000:]
    assert "(2 runs, 0 trained now, 2 from --cache;" in table.stdout


def test_bad_budgets_are_one_line() -> None:
    res = _run("benchmarks.budget_curves", "--budgets", "1k,3k")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == "error: --budgets must be whole numbers of steps, " \
        "comma-separated"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_device_that_is_not_here_is_one_line() -> None:
    # No GPU on the test machines: asking for one must fail before any worker starts.
    for module in ("benchmarks.budget_curves", "benchmarks.mode_coverage"):
        res = _run(module, "--smoke-test", "--device", "cuda")
        assert res.returncode == 2 and res.stdout == "", module
        assert res.stderr.strip().count("\n") == 0 and "not available here" in res.stderr
