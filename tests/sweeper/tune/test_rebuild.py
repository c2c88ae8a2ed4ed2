"""`prepare_rebuild` on a real Optuna study in the states a stop can leave (the loop of
row 11 found the second: a trial whose MLflow run finished while Optuna still had it
RUNNING, Ctrl-C having landed between the two)."""

from __future__ import annotations

import optuna

from sweeper.tune.rebuild import kept_trial_ids, prepare_rebuild
from sweeper.tune.recovery import ORPHANED, TUNE_TRIAL_ATTR


def _trial(study, tid: str, lam: float):
    """A trial as OptunaSearch makes one: asked, suggested (here: `lam`), tagged."""
    study.enqueue_trial({"gp_lambda": lam})
    t = study.ask()
    assert t.suggest_float("gp_lambda", 0.1, 100, log=True) == lam
    t.set_user_attr(TUNE_TRIAL_ATTR, tid)
    return t


def test_each_state_a_stop_leaves_is_kept_told_or_trained_again(tmp_path):
    (tmp_path / "tuner.pkl").write_bytes(b"x")
    (tmp_path / "experiment_state-2026.json").write_text("{}")
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    done, told, cut, pruned = (_trial(study, t, lam) for t, lam in
                               (("done", 1.0), ("told", 2.0), ("cut", 3.0), ("pruned", 4.0)))
    study.tell(done.number, 0.5)
    study.tell(pruned.number, state=optuna.trial.TrialState.PRUNED)
    # "told": finished in MLflow, still RUNNING in Optuna; "cut": running in both.
    kept = prepare_rebuild(tmp_path, "s", ended={"told": 2.4977})
    assert sorted(kept.finished) == ["done", "pruned", "told"] and kept.cut == ["cut"]
    assert kept.stopped == ["pruned"] and kept.failed == []
    assert kept_trial_ids(tmp_path) == {"done", "pruned", "told"}
    by = {t.user_attrs.get(TUNE_TRIAL_ATTR): t for t in study.get_trials()}
    assert by["told"].state == optuna.trial.TrialState.COMPLETE and by["told"].value == 2.4977
    assert by["cut"].state == optuna.trial.TrialState.FAIL
    assert by["cut"].system_attrs[ORPHANED] is True
    (waiting,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert waiting.system_attrs["fixed_params"] == {"gp_lambda": 3.0}  # trains again
    # The unreadable Tune files are moved aside, not deleted.
    assert not (tmp_path / "tuner.pkl").exists()
    (aside,) = tmp_path.glob("replaced-*")
    assert sorted(p.name for p in aside.iterdir()) == ["experiment_state-2026.json",
                                                      "tuner.pkl"]
