"""The benchmark scripts run end to end on their --smoke-test paths and print their tables."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def test_population_benchmark_smoke_prints_every_table() -> None:
    text = _run("population")
    ops = re.findall(r"^\| ([^|]+) \| (\d+) \| (\d+) \| ([\d.]+) \| [\d.]+ \| [\d.]+ \| \d+ \|$",
                     text, re.M)
    assert len(ops) == 8, text  # 4 sizes x K = 1, 3
    by_size: dict[str, list[int]] = {}
    for label, _, n, _ in ops:
        by_size.setdefault(label, []).append(int(n))
    assert all(a == b for a, b in by_size.values()), by_size  # O(1) ops in K
    speed = re.findall(r"^\| ([^|]+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| \d+ \| \d+ \| "
                       r"([\d.]+)x", text, re.M)
    assert len(speed) == 8 and all(float(r[2]) > 0 and float(r[3]) > 0 for r in speed)
    stacks = re.findall(r"^\| ([^|]+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \|$",
                        text, re.M)
    assert len(stacks) == 6  # the three registered-model sizes x K = 1, 3
    assert "user model" in text and "Goal: ops at K = 1,000" in text


def test_penalty_table_groups_settings_by_loss_and_penalty() -> None:
    from benchmarks.penalty_table import table

    def setting(loss: str, pen: str, ok: int, hq: float, w: float) -> dict:
        return {"params": {"dataset": "ring8", "loss": loss, "penalty": pen,
                           "penalty_weight": w}, "n_seeds": 3, "successes": ok,
                "hq_fraction_mean": hq, "modes_held_mean": 8 * hq}

    doc = {"ranked": [setting("wgan", "lp", 3, 0.9, 0.5), setting("wgan", "lp", 3, 0.7, 2.0),
                      setting("wgan", "lp", 1, 0.2, 9.0)],
           "flagged": [setting("bce-ns", "r1", 0, 0.1, 1.0)]}
    lines = table([doc]).splitlines()
    assert "| ring8 | bce-ns | r1 | 1 | 0 | 0/3 | - | 0.10 | 0.8 |" in lines
    assert "| ring8 | wgan | lp | 3 | 2 | 7/9 | 0.90, 0.5 | 0.70 | 7.2 |" in lines


def test_penalty_table_smoke_runs_a_penalties_sweep() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.penalty_table", "--smoke-test"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [r for r in out.stdout.splitlines() if r.startswith("| ring8 |")]
    assert rows and sum(int(r.split("|")[4]) for r in rows) == 2  # the smoke sweep's 2 trials


def test_mean_se_closed_form() -> None:
    from benchmarks._common import mean_and_se, mean_se

    # values 1, 2, 3: mean 2, sample s.d. 1, s.e. 1 / sqrt(3)
    assert mean_se([1.0, 2.0, 3.0]) == "2.00 ± 0.58"
    assert mean_se([1.0, float("nan"), 3.0], "{:.1f}") == "2.0 ± 1.0"  # NaN left out
    assert mean_se([5.0]) == "5.00" and mean_se([]) == "–"
    assert mean_and_se([2.0, 4.0]) == (3.0, 1.0)


def test_gpu_session_script_runs_every_step_then_skips_them_on_a_rerun(tmp_path) -> None:
    """benchmarks/gpu_session.sh, the prepared GPU-session run, on its smoke path on the CPU
    (no GPU here: DEVICE=cpu): every step writes its table; a rerun (as after a command cut
    at the device's 10 minutes) skips the finished ones; a failed step stops the script."""
    import os

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "benchmarks/gpu_session.sh", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=300, cwd=ROOT,
                              env={**os.environ, "DEVICE": "cpu", "WORKERS": "1",
                                   "PYTHON": sys.executable, **env})

    first = run("--smoke-test")
    assert first.returncode == 0, first.stdout + first.stderr
    for name in ("gpu_tests", "scan", "ops", "eval_cost", "rows", "fresh30", "curves"):
        assert f"{name}: exit 0" in first.stdout
    for name in ("rows", "fresh30", "curves"):
        assert "PacGAN's data, metrics and N" in (tmp_path / f"{name}.md").read_text()
    assert "skipped" in (tmp_path / "gpu_tests.md").read_text()  # no GPU here
    assert "largest K with a population step" in (tmp_path / "scan.md").read_text()
    assert "ops per generator step" in (tmp_path / "ops.md").read_text()
    assert "s per 1,000 samples" in (tmp_path / "eval_cost.md").read_text()
    assert "| wgan-gp, sweep-recommended (grid25-wgan-gp) |" in (tmp_path / "fresh30.md"
                                                                 ).read_text()
    assert (tmp_path / "budget_curves_gdpp.png").stat().st_size > 0
    again = run("--smoke-test")
    assert again.returncode == 0 and again.stdout.count("finished earlier") == 7, again.stdout
    (tmp_path / "fresh30.md").unlink()
    (tmp_path / "curves.md").unlink()
    bad = run("--smoke-test", DEVICE="nosuch")
    assert bad.returncode == 1 and "fresh30: exit 2" in bad.stdout, bad.stdout
    assert not (tmp_path / "fresh30.md").exists()
    assert "curves:" not in bad.stdout  # a failed step stops the script


def test_memory_estimate_smoke_prints_the_ratio() -> None:
    out = _run("memory_estimate")
    (row,) = [x for x in out.splitlines() if x.startswith("| hidden=1024")]
    ratio = float(row.rsplit("|", 2)[-2])
    assert 0.2 < ratio < 5, row  # near, not exact: the estimate is for refusing what cannot fit


def test_eval_cost_smoke_prints_both_tables() -> None:
    # --no-inception: the Inception rows cost ~10 s per image on a busy CPU; they run in the
    # real benchmark (and test_inception.py covers the backend).
    out = subprocess.run([sys.executable, "-m", "benchmarks.eval_cost", "--smoke-test",
                          "--no-inception"], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [r for r in out.stdout.splitlines() if r.startswith("| ") and "---" not in r]
    assert any(r.startswith("| digits | classifier |") for r in rows)
    assert any(r.startswith("| rgb 32x32 (npy:) | pixels |") for r in rows)
    assert any(r.startswith("| stacked-digits-wgan-gp | 5 | 3,000 | 3 |") for r in rows)


def test_fused_sweep_smoke_prints_both_arms_and_the_ratio() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.fused_sweep", "--smoke-test"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "| --fuse 1 | 1 |" in out.stdout and "| --fuse 2 | 2 |" in out.stdout
    assert "wall(--fuse 1) / wall(--fuse 2) = " in out.stdout
    assert "Wilson interval" in out.stdout  # both top settings confirmed on fresh seeds


def test_startup_smoke_times_both_arms_and_refuses_a_baseline_that_is_not_a_checkout(
        tmp_path) -> None:
    out = _run("startup", "--baseline", str(ROOT))  # this checkout as its own baseline
    for arm in ("baseline", "this checkout"):
        (row,) = [x for x in out.splitlines() if x.startswith(f"| {arm} | 1 |")]
        first, last, end, teardown = (float(c) for c in row.strip(" |").split("|")[2:])
        assert 0 < first <= last <= end and teardown == pytest.approx(end - last, abs=0.02)
    assert re.search(r"^exit: baseline / this checkout = [\d.]+x", out, re.M)
    bad = subprocess.run([sys.executable, "-m", "benchmarks.startup", "--smoke-test",
                          "--baseline", str(tmp_path)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "is not a gan-sweeper checkout" in bad.stderr
