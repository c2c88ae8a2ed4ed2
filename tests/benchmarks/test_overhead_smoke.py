"""benchmarks/overhead.py --smoke-test runs every section (trainer, local sweep, 1- and 2-node
`ray start` cluster, memory, step-budget plot) and prints markdown tables of real numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE_STEPS, SMOKE_BUDGETS = 20, (20, 60)  # what --smoke-test runs (see parse_args)

pytestmark = pytest.mark.slow


def _sections(text: str) -> dict[str, str]:
    """'## Title' sections keyed by the title's first word (Trainer, Sweep, Scaling, ...)."""
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {p.split(None, 1)[0].rstrip(":"): p for p in parts}


def _row(section: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first`."""
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first:
            return cells
    raise AssertionError(f"no table row starting with {first!r} in:\n{section}")


def _nums(cells: list[str]) -> list[float]:
    return [float(c.split()[0]) for c in cells]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[str, Path, Path]:
    tmp = tmp_path_factory.mktemp("overhead")
    out, png = tmp / "o.md", tmp / "p.png"
    p = subprocess.run([sys.executable, "-m", "benchmarks.overhead", "--smoke-test",
                        "--out", str(out), "--plot", str(png)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return p.stdout, out, png


def test_header_report_file_and_plot(smoke) -> None:
    text, out, png = smoke
    assert re.search(r"^machine: \d+ CPUs \(\d+ usable\), .+ torch .+ with \d+ threads", text,
                     re.M), text[:500]
    for when in ("at start", "at end"):
        assert re.search(rf"1-min load average {when}: [\d.]+ \(all CPUs \d+% busy", text)
    # stdout carries only the report (Ray's tables go to stderr), and --out is the same text
    assert out.read_text(encoding="utf-8") == text
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_trainer_section_has_ratios(smoke) -> None:
    sec = _sections(smoke[0])["Trainer"]
    for loss in ("wgan-gp", "bce-ns"):
        cells = _row(sec, loss)
        trainer_ms, minimal_ms, ratio = _nums(cells[4:7])
        assert trainer_ms > 0 and minimal_ms > 0 and ratio > 0
        assert float(cells[8]) < 1e-4  # both loops did the same math (float round-off)


def test_seeds_section_compares_populations_with_seeds_one_after_another(smoke) -> None:
    sec = _sections(smoke[0])["Seeds"]
    for label in ("one after another", "as one population"):
        wall, per_setting_wall, per_setting_busy = _nums(_row(sec, label)[1:])
        assert wall > 0 and per_setting_wall > 0 and per_setting_busy > 0
    assert re.search(r"one after another / as one population: wall [\d.]+x, trainer seconds "
                     r"[\d.]+x", sec)


def test_sweep_section_accounts_for_every_second(smoke) -> None:
    sec = _sections(smoke[0])["Sweep"]
    wall, busy, per_trial, eff, over, steady = _nums(_row(sec, f"{SMOKE_STEPS} steps x 2")[1:])
    assert wall > 0 and busy > 0 and per_trial > 0 and 0 < eff <= 1
    assert over > 0 and 0 <= steady <= over
    # wall and busy are printed to 0.1 s and efficiency to 0.001: check within that rounding
    lo, hi = (busy - 0.05) / (2 * (wall + 0.05)), (busy + 0.05) / (2 * (wall - 0.05))
    assert lo - 5e-4 <= eff <= hi + 5e-4, (wall, busy, eff)
    shares = [float(m) for m in re.findall(r"\| ([-\d.]+)% \|$", sec, re.M)]
    assert len(shares) == 5 and sum(shares) == pytest.approx(100, abs=0.5)


def test_scaling_section_compares_one_and_two_nodes(smoke) -> None:
    sec = _sections(smoke[0])["Scaling"]
    one, two = (_nums(_row(sec, label)[1:]) for label in ("1 node", "2 nodes"))
    assert one[:2] == [1, 1] and two[:2] == [2, 2]  # trials at once, nodes actually used
    assert one[2] > 0 and two[2] > 0
    speedup = float(re.search(r"wall\(1 node\) / wall\(2 nodes\) = ([\d.]+)", sec)[1])
    assert speedup == pytest.approx(one[2] / two[2], rel=0.02)
    for word in ("Fixed cost", "Shared cores", "Tail", "Placement"):
        assert f"- {word}" in sec


def test_memory_section_reports_driver_and_trial_mib(smoke) -> None:
    sec = _sections(smoke[0])["Memory"]
    for steps in SMOKE_BUDGETS:
        before, driver, trial, seen, services = _nums(_row(sec, f"{steps} steps x 2")[1:])
        assert before > 50 and driver >= before and trial > 50 and seen >= 1 and services > 0
    assert "`ray::run_trial" in sec


def test_budget_section_has_one_row_per_budget_and_a_crossover_line(smoke) -> None:
    sec = _sections(smoke[0])["Cost"]
    for steps in SMOKE_BUDGETS:
        wall, trainer, cost, over, frac, steady, frac_steady = _nums(_row(sec, str(steps))[1:])
        assert wall > 0 and 0 < trainer < cost and over > 0
        assert 0 < frac < 1 and 0 < frac_steady <= frac
    assert "Overhead below 10% of a trial's cost, measured" in sec
    assert re.search(r"Extrapolated .* ~\d+ steps in a long sweep", sec)
