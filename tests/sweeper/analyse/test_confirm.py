"""sweeper.analyse.confirm (`sweeper stable --confirm`): `fresh_seeds` never reuses a seed of
the sweep or of earlier confirms, and `confirm_settings` really trains each setting with
fresh seeds (a few steps of the tiny config), logging one confirm run per seed under the
sweep's parent run with its tags, params, metrics and final sample plot; runs are found
again by key, smoke runs are marked and never ranked, and a store without a sweep parent run
is a one-line error.

Stores are built as the product writes them, with the helpers of
tests/sweeper/track/test_reader.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sweeper.analyse.confirm import confirm_settings, fresh_seeds
from sweeper.errors import UserError
from sweeper.track import reader, store, tags
from sweeper.track.metric_keys import metrics_of
from tests.sweeper.track.test_reader import SWEEP, add_confirm, add_trial, final, sweep_store
from trainers import names
from trainers.quality import SuccessRule

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def records_with(sweep_seeds, confirm_seeds=(), smoke_seeds=()) -> reader.SweepRecords:
    seeds = tuple(reader.SeedRun(f"s{n}", n, "finished", {}) for n in sweep_seeds)
    trial = reader.TrialRun("t", "t1", "finished", {}, len(seeds), seeds)
    confirms = tuple(reader.ConfirmRun(f"c{n}", "t", n, "finished", n in smoke_seeds, {})
                     for n in (*confirm_seeds, *smoke_seeds))
    return reader.SweepRecords("e", "1", "sqlite:///x.db", "p", {}, (trial,), confirms)


# ------------------------------------------------------------------------------ seeds
@pytest.mark.parametrize("sweep_seeds, confirm_seeds, smoke_seeds, want", [
    ((0, 1, 2), (), (), [3, 4, 5]),
    ((0, 1, 2), (3, 4), (), [5, 6, 7]),
    ((0, 1, 2), (3,), (8,), [9, 10, 11]),  # a smoke test's seeds are used seeds too
    ((0, 5), (), (), [6, 7, 8]),  # above the highest, never in a gap
    ((10, 11), (2,), (), [12, 13, 14]),  # sweeps whose fixed seed starts above 0
    ((), (), (), [0, 1, 2]),
])
def test_fresh_seeds_never_reuse_a_seed_of_the_sweep_or_of_earlier_confirms(
        sweep_seeds, confirm_seeds, smoke_seeds, want):
    rec = records_with(sweep_seeds, confirm_seeds, smoke_seeds)
    got = fresh_seeds(rec, 3)
    assert got == want
    assert not set(got) & rec.used_seeds()
    assert fresh_seeds(rec, 0) == []


def test_fresh_seeds_of_a_real_store_with_confirm_runs(tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory)
    t = add_trial(s, "t1", [final()] * 3)
    add_confirm(s, t, "t1", 3, final())
    add_confirm(s, t, "t1", 5, final(), smoke=True)
    rec = reader.load_sweep(s.uri, SWEEP)
    assert rec.used_seeds() == {0, 1, 2, 3, 5}
    assert fresh_seeds(rec, 2) == [6, 7]


# ------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def confirmed(tmp_path_factory):
    """Two trials of different shapes (n_critic 1 and 2: two populations) confirmed with
    two fresh seeds each, in the order t2, t1."""
    import torch

    threads = torch.get_num_threads()
    s = sweep_store(tmp_path_factory.mktemp("confirm"), tmp_path_factory)
    t1 = add_trial(s, "t1", [final()] * 3, values={"gp_lambda": 1.0, "n_critic": 1})
    t2 = add_trial(s, "t2", [final()] * 3, values={"gp_lambda": 10.0, "n_critic": 2})
    before = reader.load_sweep(s.uri, SWEEP)
    run_ids = confirm_settings(before, [t2, t1], 2)
    torch.set_num_threads(threads)  # confirm_settings trains on one thread
    return s, {"t1": t1, "t2": t2}, before, run_ids


def test_one_confirm_run_per_seed_under_the_parent_with_the_right_tags(confirmed):
    s, trials, _, run_ids = confirmed
    assert len(run_ids) == len(set(run_ids)) == 4
    want = [("t2", 3), ("t2", 4), ("t1", 3), ("t1", 4)]  # the order of the jobs
    for run_id, (trial_id, seed) in zip(run_ids, want, strict=True):
        run = s.client.get_run(run_id)
        t = run.data.tags
        assert t[tags.TAG_KIND] == tags.KIND_CONFIRM
        assert t[tags.TAG_CONFIRM_OF] == trials[trial_id]
        assert (t[tags.TAG_TRIAL], t[tags.TAG_SEED]) == (trial_id, str(seed))
        assert (t[tags.TAG_SMOKE], t[tags.TAG_STATUS], t[tags.TAG_SWEEP]) == ("0", "finished",
                                                                             SWEEP)
        assert t[tags.PARENT_TAG] == s.parent_run_id
        assert t[tags.TAG_KEY] == store.safe_key("confirm", s.parent_run_id, trial_id, "seed",
                                                 seed)
        assert run.info.run_name == f"{trial_id}-confirm-seed{seed}"
        assert run.info.status == "FINISHED"
    kinds = [r.data.tags.get(tags.TAG_KIND) for r in reader.all_runs(s.client, s.exp_id)]
    assert sorted(kinds) == sorted(["sweep"] + ["trial"] * 2 + ["seed"] * 6 + ["confirm"] * 4)


def test_confirm_runs_train_the_setting_as_swept_with_their_fresh_seed(confirmed):
    s, _, _, run_ids = confirmed
    p = s.client.get_run(run_ids[0]).data.params  # t2, seed 3
    assert (p["gp_lambda"], p["n_critic"], p["seed"]) == ("10.0", "2", "3")
    assert (p["steps"], p["eval_every"], p["hidden"], p["dataset"]) == ("4", "2", "8", "ring8")
    assert p["device"] == "auto"  # re-chosen for the machine that confirms
    p = s.client.get_run(run_ids[3]).data.params  # t1, seed 4
    assert (p["gp_lambda"], p["n_critic"], p["seed"]) == ("1.0", "1", "4")


def test_confirm_runs_log_metrics_at_every_evaluation_and_a_final_sample_plot(
        confirmed, tmp_path):
    s, _, _, run_ids = confirmed
    for run_id in run_ids:
        m = metrics_of(s.client.get_run(run_id))
        assert m[names.STEP] == 4.0 and m[names.NUM_MODES] == 8.0 and m[names.FID_N] == 200.0
        assert math.isfinite(m[names.FID]) and 0.0 <= m[names.SEED_SCORE] <= 1.0
        assert m[names.SEED_SUCCESS] in (0.0, 1.0) and m[names.DIVERGED] == 0.0
        hist = reader.metric_history(s.client, run_id, names.MODES_HELD)
        assert [step for step, _ in hist] == [2, 4]  # eval_every 2, steps 4
        assert [a.path for a in s.client.list_artifacts(run_id, "plots")] == [
            "plots/samples_final.png"]
    local = s.client.download_artifacts(run_ids[0], "plots/samples_final.png", str(tmp_path))
    assert Path(local).read_bytes()[:8] == PNG_MAGIC
    # Different seeds of one setting train differently.
    fids = [metrics_of(s.client.get_run(r))[names.FID] for r in run_ids[:2]]
    assert fids[0] != fids[1]


def test_the_sweep_reads_back_with_the_confirm_runs_in_place_of_its_seeds(confirmed):
    s, trials, before, run_ids = confirmed
    rec = reader.load_sweep(s.uri, SWEEP)
    assert {c.run_id for c in rec.confirms} == set(run_ids)
    assert {(c.confirm_of, c.seed) for c in rec.confirms} == {
        (trials[t], n) for t in ("t1", "t2") for n in (3, 4)}
    got = {x.key: x for x in reader.settings(rec)}
    for key in trials.values():
        assert (got[key].source, list(got[key].seed_ids)) == ("confirm", [3, 4])
    assert rec.used_seeds() == {0, 1, 2, 3, 4}
    assert fresh_seeds(rec, 2) == [5, 6]
    assert fresh_seeds(before, 2) == [3, 4]  # what the first confirm used


def test_confirming_again_with_the_same_seeds_creates_no_duplicate_runs(
        tmp_path, tmp_path_factory, one_thread):
    s = sweep_store(tmp_path, tmp_path_factory)
    t = add_trial(s, "t1", [final()])
    rec = reader.load_sweep(s.uri, SWEEP)
    first = confirm_settings(rec, [t], 1)
    # The same records again (say, a second `stable --confirm` that read the sweep before
    # the first one logged): the same fresh seed, so the same key, so the same run.
    again = confirm_settings(rec, [t], 1)
    assert again == first
    confirms = [r for r in reader.all_runs(s.client, s.exp_id)
                if r.data.tags.get(tags.TAG_KIND) == tags.KIND_CONFIRM]
    assert [r.info.run_id for r in confirms] == first
    assert confirms[0].data.tags[tags.TAG_STATUS] == "finished"
    assert confirms[0].info.status == "FINISHED"
    assert len(reader.load_sweep(s.uri, SWEEP).confirms) == 1


def test_confirming_again_with_the_same_seeds_does_not_log_steps_twice(
        tmp_path, tmp_path_factory, one_thread):
    s = sweep_store(tmp_path, tmp_path_factory)
    t = add_trial(s, "t1", [final()])
    rec = reader.load_sweep(s.uri, SWEEP)
    (run_id,) = confirm_settings(rec, [t], 1)
    confirm_settings(rec, [t], 1)
    steps = [step for step, _ in reader.metric_history(s.client, run_id, names.FID)]
    assert steps == [2, 4]


def test_smoke_confirm_runs_are_marked_use_the_smoke_budget_and_are_never_ranked(
        tmp_path, tmp_path_factory, one_thread):
    # A lenient rule: every seed that did not diverge succeeds, even after two steps.
    lenient = SuccessRule(min_coverage=0.0, min_mode_share=0.0, min_hq_ratio=0.0)
    s = sweep_store(tmp_path, tmp_path_factory, rule=lenient)
    t = add_trial(s, "t1", [final()] * 3)
    rec = reader.load_sweep(s.uri, SWEEP)
    assert rec.rule == lenient
    (run_id,) = confirm_settings(rec, [t], 1, smoke={"steps": 2, "eval_every": 1})
    run = s.client.get_run(run_id)
    assert run.data.tags[tags.TAG_SMOKE] == "1" and run.data.tags[tags.TAG_SEED] == "3"
    assert (run.data.params["steps"], run.data.params["eval_every"]) == ("2", "1")
    assert metrics_of(run)[names.STEP] == 2.0
    # Judged by the sweep's rule (the default one fails every seed after two steps).
    assert metrics_of(run)[names.SEED_SUCCESS] == 1.0
    assert [st for st, _ in reader.metric_history(s.client, run_id, names.FID)] == [1, 2]
    after = reader.load_sweep(s.uri, SWEEP)
    assert [c.smoke for c in after.confirms] == [True]
    (x,) = reader.settings(after)
    assert (x.source, list(x.seed_ids)) == ("sweep", [0, 1, 2])
    assert fresh_seeds(after, 1) == [4]  # the smoke seed is not given out again


def test_a_store_without_a_sweep_parent_run_is_a_one_line_user_error(
        tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory, parent=False)
    t = add_trial(s, "t1", [final()])
    rec = reader.load_sweep(s.uri, SWEEP)
    assert rec.parent_run_id is None
    with pytest.raises(UserError) as e:
        confirm_settings(rec, [t], 2)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"experiment {SWEEP!r} has no sweep parent run")
    assert "sweeper run" in msg
    assert len(reader.all_runs(s.client, s.exp_id)) == 2  # nothing was created
