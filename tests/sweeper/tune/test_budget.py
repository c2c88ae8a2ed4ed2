"""The compute budget's stopper (sweeper/tune/budget.py), without Ray running: what it counts,
when it stops, and that a restore goes on from the counts on disk."""

from __future__ import annotations

import json
import pickle

from sweeper.tune.budget import BUDGET_FILE, ComputeBudget
from trainers import names


def test_counts_latest_step_times_seeds_per_trial_and_stops_at_the_budget(tmp_path):
    b = ComputeBudget(max_steps=500, seeds=3, sweep_path=tmp_path)
    assert not b.stop_all()
    assert b("a", {names.STEP: 50}) is False  # single trials are never stopped by it
    assert b("a", {names.STEP: 100}) is False  # a trial's latest step, not a running sum
    assert b.spent() == 300 and not b.stop_all()
    b("b", {names.STEP: 60})
    assert b.spent() == 480 and not b.stop_all()
    b("b", {names.STEP: 70})
    assert b.spent() == 510 and b.stop_all()
    assert json.loads((tmp_path / BUDGET_FILE).read_text()) == {"a": 300.0, "b": 210.0}


def test_a_restored_stopper_goes_on_from_the_file_not_from_its_pickle(tmp_path):
    b = ComputeBudget(max_steps=1000, seeds=2, sweep_path=tmp_path)
    frozen = pickle.dumps(b)  # Tune pickles the stopper once, at the start
    b("a", {names.STEP: 300})
    b("b", {names.STEP: 100})
    restored = pickle.loads(frozen)
    assert restored.spent() == 800
    restored("b", {names.STEP: 100})  # a resumed trial replays a report: nothing counts twice
    assert restored.spent() == 800 and not restored.stop_all()
    restored("b", {names.STEP: 200})
    assert restored.stop_all()


def test_a_missing_or_torn_file_counts_as_nothing_spent(tmp_path):
    assert ComputeBudget(10, 1, tmp_path).spent() == 0
    (tmp_path / BUDGET_FILE).write_text('{"a": 1')
    assert ComputeBudget(10, 1, tmp_path).spent() == 0


def test_the_steps_each_seed_trained_count_when_the_trial_reports_them(tmp_path):
    b = ComputeBudget(max_steps=500, seeds=3, sweep_path=tmp_path)
    # Three seeds at step 100, one of which diverged at step 40: 240 steps spent, not 300.
    b("a", {names.STEP: 100, names.STEPS_TRAINED: 240})
    assert b.spent() == 240


def test_the_progress_table_says_how_much_of_the_budget_is_spent(tmp_path, capsys):
    from types import SimpleNamespace

    from sweeper.tune.progress import ProgressCallback

    b = ComputeBudget(max_steps=2000, seeds=2, sweep_path=tmp_path)
    b("a", {names.STEP: 250})
    cb = ProgressCallback(["lr_d"], 6, 2, every_s=0, budget=(2000, tmp_path / BUDGET_FILE))
    running = SimpleNamespace(trial_id="a", status="RUNNING", config={"lr_d": 0.001},
                              last_result={names.STEP: 250})
    cb.on_step_end(1, [running])
    head = capsys.readouterr().out.splitlines()[0]
    assert head.endswith("1 running, 0 ended, 5 to go, compute 500 of 2,000 generator steps "
                         "(25%)"), head


def test_a_progress_callback_pickled_before_the_budget_existed_still_prints(capsys):
    """Tune resumes with the callback pickled at the sweep's start. One pickled by a version
    without the budget line crashed the resume with AttributeError in on_step_end."""
    from types import SimpleNamespace

    from sweeper.tune.progress import ProgressCallback

    state = ProgressCallback(["lr_d"], 3, 1, every_s=0).__getstate__()
    del state["budget"]  # what the older version pickled
    restored = ProgressCallback.__new__(ProgressCallback)
    restored.__setstate__(state)
    running = SimpleNamespace(trial_id="a", status="RUNNING", config={"lr_d": 0.001},
                              last_result={names.STEP: 10})
    restored.on_step_end(1, [running])
    assert capsys.readouterr().out.splitlines()[0].endswith("1 running, 0 ended, 2 to go")
