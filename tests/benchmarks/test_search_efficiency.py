"""benchmarks/search_efficiency.py: its bookkeeping on hand-made trials, and its --smoke-test
end to end (two real sweeps, the markdown report and the figure)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import search_efficiency as se

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ["-m", "benchmarks.search_efficiency"]


def trial(i: int, steps: int, *, finished: bool = True, success: float = 0.0,
          fid: float = 1.0, hq: float = 0.0) -> se.Trial:
    failed = 3 * (1 - success)
    return se.Trial(f"t{i}", index=i, end_ms=1000 + i, steps=steps, seconds=steps / 100,
                    finished=finished, success_rate=success if finished else 0.0,
                    objective=failed + fid / (1 + fid) if finished else math.inf,
                    fid_median=fid, hq_mean=hq)


def sequential(trials: list[se.Trial]) -> list[se.Trial]:
    """As if run one at a time: compute spent at each completion = the running sum."""
    out, spent = [], 0
    for t in trials:
        spent += t.steps
        out.append(dataclasses.replace(t, spent_steps=spent, spent_seconds=spent / 100))
    return out


def test_budget_curve_counts_only_finished_trials_as_candidates():
    trials = sequential([trial(0, 600, finished=False), trial(1, 1800, success=2 / 3),
                         trial(2, 600, finished=False), trial(3, 1800, success=1.0, fid=0.1)])
    curve = se.budget_curve(trials)
    assert [pt.steps for pt in curve] == [600, 2400, 3000, 4800]
    assert [pt.best_success for pt in curve] == [0.0, 2 / 3, 2 / 3, 1.0]
    assert math.isinf(curve[0].best_objective)
    assert curve[3].best_objective == pytest.approx(0.1 / 1.1)
    assert se.value_at_compute(curve, 2399, "best_success") == 0.0
    assert se.value_at_compute(curve, 2400, "best_success") == pytest.approx(2 / 3)
    assert math.isnan(se.value_at_trials(curve, 5, "best_success"))


def test_spent_counts_work_in_flight_on_other_trials():
    # Two seed runs: one evaluated at t=10 (100 steps) and t=20 (200), the other at t=15 (50).
    traces = [[(10, 100, 1.0), (20, 200, 2.0)], [(15, 50, 0.5)]]
    assert se.spent_at(traces, 9) == (0, 0.0)
    assert se.spent_at(traces, 15) == (150, 1.5)
    assert se.spent_at(traces, 99) == (250, 2.5)


def test_within_budget_keeps_trials_completed_before_c_was_spent():
    run = se.SearchRun(se.ARMS[0], 0, 0, tuple(sequential([trial(i, 700) for i in range(5)])),
                       wall=1.0)
    assert [t.trial_id for t in run.within(2100)] == ["t0", "t1", "t2"]
    assert [t.trial_id for t in run.within(2099)] == ["t0", "t1"]


def test_first_reach_and_targets():
    p = se.Protocol(steps=600, eval_every=100, eval_samples=2500, hidden=64, batch_size=128,
                    seeds=3, concurrency=2, repeats=1, budget_trials=4, tpe_factor=2.5,
                    fid_target=0.05)
    t0, t1, t2 = se.targets(p)
    trials = sequential([trial(0, 600, finished=False), trial(1, 1800, success=2 / 3, fid=0.1),
                         trial(2, 1800, success=1.0, fid=0.2),
                         trial(3, 1800, success=1.0, fid=0.01)])
    assert se.first_reach(trials, t0).steps == 2400
    assert se.first_reach(trials, t1).steps == 4200
    assert se.first_reach(trials, t2).steps == 6000
    assert se.first_reach(trials[:3], t2) is None
    assert p.budget == 7200 and p.tpe_trials == 10


def test_the_quality_target_needs_every_seed_and_the_mean_hq():
    p = se.Protocol(steps=2000, eval_every=100, eval_samples=2500, hidden=64, batch_size=128,
                    seeds=3, concurrency=2, repeats=1, budget_trials=40, tpe_factor=2.0,
                    fid_target=0.05, dataset="grid25", hq_target=0.6)
    keys = [t.key for t in se.targets(p)]
    assert keys == ["T0", "T1", "T2", "T3"]
    t3 = se.targets(p)[3]
    assert "mean HQ >= 60%" in t3.text
    trials = sequential([trial(0, 6000, success=2 / 3, hq=0.9),  # a seed failed
                         trial(1, 6000, success=1.0, hq=0.59),  # every seed, HQ too low
                         trial(2, 6000, finished=False, hq=0.0),  # stopped by ASHA
                         trial(3, 6000, success=1.0, hq=0.6)])
    assert se.first_reach(trials, t3).steps == 24000
    assert se.first_reach(trials[:3], t3) is None
    # without --hq-target there is no T3, as in the searches saved before it existed
    assert [t.key for t in se.targets(dataclasses.replace(p, hq_target=0.0))] == \
        ["T0", "T1", "T2"]
    space = se.space_doc(p)
    assert space["fixed"]["dataset"] == "grid25" and "grid25" in space["description"]


def test_a_saved_protocol_from_before_the_options_loads_as_ring8():
    old = {"steps": 600, "eval_every": 100, "eval_samples": 2500, "hidden": 64,
           "batch_size": 128, "seeds": 3, "concurrency": 2, "repeats": 3, "budget_trials": 10,
           "tpe_factor": 2.0, "fid_target": 0.003}
    p = se.Protocol(**old)
    assert (p.dataset, p.hq_target, p.tpe_startup, p.tpe_multivariate) == \
        ("ring8", 0.0, 10, False)


def test_a_saved_search_loads_back_exactly_and_a_missing_one_is_none(tmp_path):
    tpe = se.ARMS[0]
    run = se.SearchRun(tpe, 1, 1, tuple(sequential(
        [trial(0, 300, success=1.0, hq=0.7), trial(1, 100, finished=False)])), 12.5)
    assert math.isinf(run.trials[1].objective)  # an unfinished trial's objective survives
    se.save_search(tmp_path, run)
    assert se.load_search(tmp_path, tpe, 1) == run
    assert se.load_search(tmp_path, tpe, 0) is None
    assert se.load_search(tmp_path, se.ARMS[1], 1) is None
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_space_fixes_the_protocols_schedule_and_old_protocols_were_constant():
    old = se.Protocol(steps=600, eval_every=100, eval_samples=2500, hidden=64, batch_size=128,
                      seeds=3, concurrency=2, repeats=3, budget_trials=10, tpe_factor=2.0,
                      fid_target=0.003)
    assert se.space_doc(old)["fixed"]["lr_schedule"] == "constant"
    new = se.protocol_from(se.parse_args(["--dataset", "grid25", "--steps", "6000"]))
    assert (new.lr_schedule, new.eval_every) == ("linear", 300)
    assert se.space_doc(new)["fixed"]["lr_schedule"] == "linear"
    ring = se.protocol_from(se.parse_args([]))
    assert (ring.lr_schedule, ring.eval_every) == ("constant", 100)
    assert (old.sampler_seed_start, ring.sampler_seed_start) == (0, 0)
    fresh = se.protocol_from(se.parse_args(["--sampler-seed-start", "100", "--repeats", "5"]))
    assert "sampler seeds 100..104 (the same for both arms)" in se.protocol_section(fresh)


def test_ratio_is_exact_a_bound_or_unknown_when_repeats_miss_the_target():
    assert se.ratio_text([4000.0, 6000.0], [2000.0, 3000.0], 9000) == "2.00"
    assert se.ratio_text([None, 6000.0], [2000.0, 3000.0], 9000) == ">= 3.00"
    assert se.ratio_text([4000.0, 6000.0], [2000.0, None], 9000) == "<= 0.91"
    assert se.ratio_text([None, 6000.0], [None, 3000.0], 9000) == (
        "n/a over all repeats; 2.00 over the 1 both reached")
    assert se.ratio_text([None, 6000.0], [3000.0, None], 9000).startswith("n/a (no repeat")


def _body(report: str) -> str:
    """The measured part of a report (targets, curves, every search), without timings."""
    return report[report.index("## Compute to reach a target"):report.index("Figure:")]


@pytest.mark.slow
def test_smoke_test_runs_both_arms_and_writes_tables_and_figure(tmp_path):
    out, png, state = tmp_path / "se.md", tmp_path / "se.png", tmp_path / "state"
    p = subprocess.run([sys.executable, *SCRIPT, "--smoke-test", "--out", str(out),
                        "--plot", str(png), "--state-dir", str(state), "--hq-target", "0.5",
                        "--tpe-multivariate"], capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    text = p.stdout
    assert out.read_text(encoding="utf-8").strip() == text.strip()
    assert "machine: " in text and "total wall time:" in text and "n_critic" in text
    # Budget-curve rows: compute, full trials, then success/objective per arm.
    rows = re.findall(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| (.+) \| ([\d.]+) \| (.+) \|$",
                      text, re.M)
    assert [int(r[0]) for r in rows] == [30, 60, 90, 120], text
    assert all(0.0 <= float(r[2]) <= 1.0 and 0.0 <= float(r[4]) <= 1.0 for r in rows)
    # One row per search: both arms ran, and counted only what was spent within C = 3 x 20
    # steps x 2 seeds = 120 generator steps.
    searches = re.findall(r"^\| (TPE \+ ASHA|random) \| 0 \(0\) \| (\d+) \| (\d+) \| (\d+) \| "
                          r"(\d+) \| (\d+|-) \| (\d+)(?: \(\d+\))? \| (\d+) \| (\d+) \| (\d+) \|",
                          text, re.M)
    assert [s[0] for s in searches] == ["TPE + ASHA", "random"], text
    for _arm, run, kept, finished, stopped, _guided, stable, steps, spent, _secs in searches:
        assert int(kept) == int(finished) + int(stopped) and 0 < int(kept) <= int(run)
        assert int(stable) <= int(finished)
        assert 0 < int(spent) <= 120 and int(spent) <= int(steps)
    assert int(searches[1][1]) == 3 and searches[1][4] == "0"  # random: 3 trials, none stopped
    assert searches[1][5] == "-" and searches[0][5] == "0"  # TPE never left its start-up
    assert int(searches[0][1]) == 4  # TPE + ASHA: ceil(1.2 x 3) trials
    targets = re.findall(r"^\| (T0|T1|T2|T3) \| (TPE \+ ASHA|random) \| (\d)/1 \|", text,
                         re.M)
    assert len(targets) == 8, text
    assert "**T3**: T1 and mean HQ >= 50% over the seeds" in text
    assert "multivariate=True" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    # The kept state re-analyses to the same numbers, without training anything.
    again = subprocess.run([sys.executable, *SCRIPT, "--reanalyze", "--state-dir",
                            str(state), "--plot", str(tmp_path / "again.png")],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _body(again.stdout) == _body(text)
    assert "re-analysis of the searches in" in again.stdout

    # --resume on a finished run keeps both searches and trains nothing.
    kept = subprocess.run([sys.executable, *SCRIPT, "--resume", "--state-dir", str(state),
                           "--plot", str(tmp_path / "kept.png")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert kept.stderr.count("(kept from an earlier invocation)") == 2, kept.stderr[-3000:]
    assert _body(kept.stdout) == _body(text)

    # Only the compact results are committed when the state dir sits in a git checkout...
    subprocess.run(["git", "init", "-q", str(state)], check=True)
    listed = subprocess.run(["git", "-C", str(state), "status", "--porcelain", "-uall"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert sorted(f for f in listed if f != "??") == [
        ".gitignore", "protocol.json", "searches/random-r0.json", "searches/tpe-asha-r0.json"]
    # ...and they are all another machine needs to go on: with only TPE's search there,
    # --resume keeps it and runs random search.
    moved = tmp_path / "moved"
    (moved / "searches").mkdir(parents=True)
    shutil.copy(state / "protocol.json", moved)
    shutil.copy(state / "searches" / "tpe-asha-r0.json", moved / "searches")
    cont = subprocess.run([sys.executable, *SCRIPT, "--resume", "--state-dir", str(moved),
                           "--plot", str(tmp_path / "cont.png")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert cont.returncode == 0, cont.stderr[-3000:]
    assert "TPE + ASHA repeat 0 (kept from an earlier invocation)" in cont.stderr
    assert "random repeat 0:" in cont.stderr
    assert (moved / "searches" / "random-r0.json").is_file()
    tpe_row = re.compile(r"^\| TPE \+ ASHA \| 0 \(0\) \|.*$", re.M)
    assert tpe_row.findall(cont.stdout) == tpe_row.findall(text)


def test_resume_and_reanalyze_need_a_saved_run(tmp_path):
    for flag in ("--resume", "--reanalyze"):
        p = subprocess.run([sys.executable, *SCRIPT, flag, "--state-dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert p.stderr.strip().count("\n") == 0, p.stderr
        assert f"{flag} needs --state-dir DIR holding protocol.json" in p.stderr


def test_reanalyze_of_a_run_still_going_reports_its_complete_repeats_as_interim(tmp_path):
    """A run split over sessions: repeat 0 of both arms and repeat 1 of TPE are saved. The
    report covers repeat 0 only and says so; with nothing complete it is one line, exit 2."""
    p = dataclasses.replace(se.Protocol(steps=100, eval_every=50, eval_samples=100,
                                        hidden=8, batch_size=32, seeds=3, concurrency=2,
                                        repeats=5, budget_trials=4, tpe_factor=2.0,
                                        fid_target=0.003), hq_target=0.6)
    (tmp_path / se.PROTOCOL_FILE).write_text(json.dumps(dataclasses.asdict(p)))
    tpe, rnd = se.ARMS
    cmd = [sys.executable, *SCRIPT, "--reanalyze", "--state-dir", str(tmp_path), "--plot",
           str(tmp_path / "f.png")]
    se.save_search(tmp_path, se.SearchRun(tpe, 0, 0, tuple(sequential(
        [trial(0, 300), trial(1, 300, success=1.0, hq=0.7)])), 10.0))
    none = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert none.returncode == 2 and none.stderr.count("\n") == 1, none.stderr
    assert "no repeat of the run" in none.stderr
    se.save_search(tmp_path, se.SearchRun(rnd, 0, 0, tuple(sequential(
        [trial(0, 300), trial(1, 300), trial(2, 300, success=1.0, hq=0.9)])), 10.0))
    se.save_search(tmp_path, se.SearchRun(tpe, 1, 1, tuple(sequential([trial(0, 300)])), 5.0))
    assert se.interim_repeats(tmp_path, p) == 1
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "INTERIM: 1 of the protocol's 5 repeats are in" in out.stdout
    # T3 (all seeds, HQ >= 60%): TPE at 600 steps, random at 900, in the one repeat.
    rows = [line for line in out.stdout.splitlines() if line.startswith("| T3")]
    assert "| TPE + ASHA | 1/1 | 600 |" in rows[0] and "| 1.50 |" in rows[0], rows
    assert "| random | 1/1 | 900 |" in rows[1], rows


def test_random_hit_rate_pools_its_trials_and_gives_expected_compute_with_an_interval():
    """Closed form: 1 T3 hit in 20 random trials is p = 0.05, Wilson 95% [0.0089, 0.2361];
    trials of 100 steps x 3 seeds = 300 gen steps, so a first hit is expected after 300 / p =
    6000 [1270, 33778] gen steps, 10x TPE's 600."""
    from sweeper.analyse.stability import wilson_interval

    p = dataclasses.replace(se.Protocol(steps=100, eval_every=50, eval_samples=100, hidden=8,
                                        batch_size=32, seeds=3, concurrency=2, repeats=2,
                                        budget_trials=10, tpe_factor=2.0, fid_target=0.003),
                            hq_target=0.6)
    tpe, rnd = se.ARMS
    plain = [trial(i, 300) for i in range(10)]
    hit = [*plain[:9], trial(9, 300, success=1.0, hq=0.7)]
    runs = {"random": [se.SearchRun(rnd, 0, 0, tuple(sequential(plain)), 1.0),
                       se.SearchRun(rnd, 1, 1, tuple(sequential(hit)), 1.0)],
            "tpe-asha": [se.SearchRun(tpe, r, r, tuple(sequential(
                [trial(0, 300), trial(1, 300, success=1.0, hq=0.7)])), 1.0) for r in (0, 1)]}
    lo, hi = wilson_interval(1, 20)
    assert (round(lo, 4), round(hi, 4)) == (0.0089, 0.2361)
    row = next(line for line in se.random_rate_table(p, runs).splitlines()
               if line.startswith("| T3 |"))
    assert row == (f"| T3 | 1/20 | 0.050 [{lo:.3f}, {hi:.3f}] | 6000 [{300 / hi:.0f}, "
                   f"{300 / lo:.0f}] | 600 (2/2) | 10.00 [{300 / hi / 600:.2f}, "
                   f"{300 / lo / 600:.2f}] |"), row
    # A TPE repeat that missed counts as C (3000 steps): the ratio becomes an upper bound.
    runs["tpe-asha"][1] = se.SearchRun(tpe, 1, 1, tuple(sequential(plain[:3])), 1.0)
    row = next(line for line in se.random_rate_table(p, runs).splitlines()
               if line.startswith("| T3 |"))
    assert "| 1800 (1/2) | <= 3.33 [" in row, row
