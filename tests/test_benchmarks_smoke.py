"""The benchmark scripts run end to end on their --smoke-test paths and print their tables."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--smoke-test",
                          *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_trainer_overhead_smoke_prints_ratios_and_thread_check() -> None:
    text = _run("trainer_overhead")
    assert "| loss | n_critic | Trainer CPU ms/step | minimal CPU ms/step |" in text
    for loss in ("wgan-gp", "bce-ns"):
        row = re.search(rf"^\| {loss} \| \d+ \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) .*\| "
                        r"([\d.e+-]+) \| ([\d.]+) \| ([\d.]+) \|$", text, re.M)
        assert row, text
        assert float(row[3]) > 0 and float(row[6]) >= 0
        # the minimal loop and the Trainer did the same math (to float round-off)
        assert float(row[4]) < 1e-4
    assert text.count(" OK") == 2 and "MISMATCH" not in text


def test_sweep_overhead_smoke_prints_efficiency() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.sweep_overhead",
                          "--smoke-test"], capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    row = re.search(r"^\| True \| ([\d.]+) \| ([\d.]+) \| [\d.]+ \| ([\d.]+) \| ([-\d.]+) \|$",
                    out.stdout, re.M)
    assert row, out.stdout[-2000:]
    wall, busy, eff = float(row[1]), float(row[2]), float(row[3])
    assert wall > 0 and busy > 0 and 0 < eff <= 1


def test_load_test_smoke_finds_every_run_once() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.load_test",
                          "--smoke-test"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "RESULT: all runs present once" in out.stdout
    assert "trial runs 6/6, seed runs 6/6" in out.stdout and "duplicate keys 0" in out.stdout


def test_quality_cases_smoke_shows_old_and_new_verdicts() -> None:
    text = _run("quality_cases")
    rows = {r[2].strip(): (r[-3].strip(), r[-2].strip())
            for r in (line.split("|") for line in text.splitlines()
                      if line.startswith("| ring8") or line.startswith("| grid25"))}
    assert len(rows) == 8
    assert rows["uniform on the unit circle (no modes)"] == ("success", "fail")
    assert rows["the 8 modes at sigma x 5"] == ("success", "fail")
    assert rows["one mode"] == ("fail", "fail")
    assert rows["the true mixture (sigma 0.01)"] == ("success", "success")


def test_population_benchmark_smoke_prints_both_sizes() -> None:
    text = _run("population")
    rows = re.findall(r"^\| (ring8 table|compute-bound)[^|]* \| (\d+) \| ([\d.]+) \| ([\d.]+) \|",
                      text, re.M)
    assert [(r[0], r[1]) for r in rows] == [("ring8 table", "1"), ("ring8 table", "3"),
                                            ("compute-bound", "1"), ("compute-bound", "3")]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)
