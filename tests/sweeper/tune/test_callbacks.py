"""sweeper.tune.callbacks.TrialStatusCallback against a real MLflow SQLite store: a trial that
ASHA stopped (its last result has no `objective`) or that errored gets its trial run and its
seed runs tagged and ended (stopped_early/FINISHED with the step it reached, error/FAILED),
a diverged seed keeps its status, a finished trial and every other run are left alone,
replaying it creates nothing, bookkeeping failures never raise, and the callback pickles
without its MLflow client.

The callback methods are called directly, as Tune's driver loop would call them. A real
`ray.tune.experiment.Trial` only exists inside a running Tune experiment; the callback reads
nothing of it but `last_result`, so a types.SimpleNamespace with that attribute (and a
trial_id, for readability) stands in for it. The runs are built as the product writes them,
with the helpers of tests/sweeper/track/test_reader.py.
"""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest

from sweeper.track import reader, tags
from sweeper.tune.callbacks import TrialStatusCallback
from sweeper.tune.trial import RUN_ID
from tests.sweeper.track.test_reader import add_confirm, add_trial, final, sweep_store
from trainers import names


def trial(run_id: str | None, **result) -> SimpleNamespace:
    """The part of a Tune Trial the callback reads: its last result."""
    last = {names.STEP: 2.0, names.RUNNING_OBJECTIVE: 0.9, **result}
    if run_id is not None:
        last[RUN_ID] = run_id
    return SimpleNamespace(trial_id="stand-in", last_result=last)


@pytest.fixture
def live(tmp_path, tmp_path_factory):
    """A sweep in progress: t1 and t2 are training (2 seeds and 1 seed), t0 finished, and a
    confirm run sits under the sweep's parent run."""
    s = sweep_store(tmp_path, tmp_path_factory)
    ids = {"t0": add_trial(s, "t0", [final()]),
           "t1": add_trial(s, "t1", [final(step=2), final(step=2)], status="running"),
           "t2": add_trial(s, "t2", [final(step=2)], status="running")}
    ids["confirm"] = add_confirm(s, ids["t0"], "t0", 1, final())
    return s, ids


def states(s) -> dict[str, tuple[str | None, str]]:
    """(status tag, MLflow state) of every run, by run id."""
    return {r.info.run_id: (r.data.tags.get(tags.TAG_STATUS), r.info.status)
            for r in reader.all_runs(s.client, s.exp_id)}


def stopped_at(s, run_id: str) -> str | None:
    return s.client.get_run(run_id).data.tags.get(tags.TAG_STOPPED_AT)


def family(s, trial_run_id: str) -> list[str]:
    """The trial run and its seed runs."""
    return [trial_run_id] + [r.info.run_id for r in reader.all_runs(s.client, s.exp_id)
                             if r.data.tags.get(tags.PARENT_TAG) == trial_run_id]


def test_a_trial_stopped_early_is_marked_with_its_seed_runs_and_nothing_else(live):
    s, ids = live
    before = states(s)
    TrialStatusCallback(s.uri).on_trial_complete(3, [], trial(ids["t1"]))
    after = states(s)
    marked = family(s, ids["t1"])
    assert len(marked) == 3
    # ASHA's stop is not a crash: FINISHED, with the step it reached (issue 38).
    assert {after[r] for r in marked} == {("stopped_early", "FINISHED")}
    assert {stopped_at(s, r) for r in marked} == {"2"}
    # The other trials, the finished one, the confirm run and the parent are untouched.
    assert {r: v for r, v in after.items() if r not in marked} == {
        r: v for r, v in before.items() if r not in marked}
    assert after[ids["t2"]] == ("running", "RUNNING")
    assert after[ids["t0"]] == ("finished", "FINISHED")
    assert after[ids["confirm"]] == ("finished", "FINISHED")
    assert after[s.parent_run_id] == (None, "RUNNING")
    # The reader now sees a trial stopped early, kept but not at full budget.
    rec = reader.load_sweep(s.uri, s.name)
    t1 = rec.trial(ids["t1"])
    assert (t1.status, t1.complete) == ("stopped_early", False)
    assert [x.status for x in t1.seeds] == ["stopped_early"] * 2


def test_a_trial_that_reported_its_objective_is_left_alone(live):
    s, ids = live
    before = states(s)
    cb = TrialStatusCallback(s.uri)
    cb.on_trial_complete(3, [], trial(ids["t0"], objective=0.25))
    cb.on_trial_complete(3, [], trial(ids["t2"], objective=0.25))  # its runs close themselves
    assert states(s) == before


def test_an_errored_trial_is_marked_error_and_failed_but_a_diverged_seed_stays_diverged(
        tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory)
    # The trial's own close (trial.py, on an exception) tagged its seeds; then Tune reports
    # the error to the driver.
    t = add_trial(s, "t1", [final(step=2), final(diverged=True, step=2)], status="error")
    seed0, seed1 = reader.load_sweep(s.uri, s.name).trial(t).seeds
    assert (seed1.status, s.client.get_run(seed1.run_id).info.status) == ("diverged",
                                                                          "FINISHED")
    TrialStatusCallback(s.uri).on_trial_error(5, [], trial(t))
    after = states(s)
    assert after[t] == ("error", "FAILED")
    assert after[seed0.run_id] == ("error", "FAILED")
    assert after[seed1.run_id] == ("diverged", "FINISHED")


def test_an_error_before_any_result_or_without_a_run_id_changes_nothing(live):
    s, ids = live
    before = states(s)
    cb = TrialStatusCallback(s.uri)
    cb.on_trial_error(0, [], SimpleNamespace(trial_id="t9", last_result=None))
    cb.on_trial_error(0, [], SimpleNamespace(trial_id="t9", last_result={}))
    cb.on_trial_complete(1, [], trial(None))
    cb.on_trial_complete(1, [], trial(""))
    assert states(s) == before


def test_bookkeeping_failures_never_raise(live):
    s, ids = live
    before = states(s)
    cb = TrialStatusCallback(s.uri)
    cb.on_trial_complete(1, [], trial("0" * 32))  # a run id MLflow does not know
    cb.on_trial_error(1, [], trial("not a run id"))
    assert states(s) == before


def test_replaying_the_callback_on_restore_creates_or_changes_nothing_more(live):
    s, ids = live
    cb = TrialStatusCallback(s.uri)
    cb.on_trial_complete(3, [], trial(ids["t1"]))
    once = states(s)
    TrialStatusCallback(s.uri).on_trial_complete(3, [], trial(ids["t1"]))  # Tuner.restore
    cb.on_trial_complete(3, [], trial(ids["t1"]))
    assert states(s) == once
    assert len(once) == 1 + 2 + 3 + 2 + 1  # parent, t0, t1 and t2 with their seeds, confirm


def test_the_callback_pickles_without_its_client_and_works_after(live):
    s, ids = live
    cb = TrialStatusCallback(s.uri)
    cb.on_trial_complete(3, [], trial(ids["t1"]))
    assert cb._client is not None  # opened at first use
    copy = pickle.loads(pickle.dumps(cb))
    assert copy.tracking_uri == s.uri and copy._client is None
    copy.on_trial_error(4, [], trial(ids["t2"]))
    after = states(s)
    assert {after[r] for r in family(s, ids["t2"])} == {("error", "FAILED")}
    assert {after[r] for r in family(s, ids["t1"])} == {("stopped_early", "FINISHED")}
