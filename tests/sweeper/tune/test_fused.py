"""Fused sweeps (`sweeper run --fuse P`) on a real local Ray, Optuna study and MLflow: P
settings per trial as one population, successive halving inside it, and every setting still
its own trial run, Optuna trial and table row."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from sweeper.track import store, tags
from sweeper.track.metric_keys import metrics_of
from sweeper.tune.driver import sweep_path
from sweeper.tune.halving import passed, rungs, survivors
from sweeper.tune.recovery import TUNE_TRIAL_ATTR
from sweeper.tune.trial_ids import setting_ids, tune_trial_of
from tests.sweeper.tune.test_sweep import sweeper
from trainers import names

SPACE = {
    "description": "fused test space",
    "fixed": {"dataset": "ring8", "loss": "wgan-gp", "steps": 40, "eval_every": 10,
              "eval_samples": 300, "hidden": 16, "depth": 2, "batch_size": 32},
    "params": {"gp_lambda": {"log_uniform": [0.1, 100]},
               "lr_d": {"log_uniform": [1e-4, 1e-2]}},
}
NUM, SEEDS = 8, 2


# ------------------------------------------------------------------ the pure parts
def test_rungs_are_ashas_and_halving_keeps_the_best_third():
    assert rungs(1200, 0.25, 3) == (300, 900)
    assert rungs(40, 0.25, 2) == (10, 20)
    assert passed((300, 900), 299) == 0 and passed((300, 900), 600) == 1
    assert survivors([3.0, 1.0, 2.0, 0.5], 3) == [3]
    assert survivors([3.0, 1.0, 2.0, 0.5, 9.0, 0.7], 3) == [3, 5]
    assert survivors([float("nan"), 2.0], 3) == [1]  # NaN is worst
    assert survivors([1.0, 1.0, 1.0], 2) == [0]  # ties go to the earlier setting


def test_setting_ids_name_their_tune_trial():
    assert setting_ids("ab12_00003", {"lr_d": 1.0}) == ["ab12_00003"]
    ids = setting_ids("ab12_00003", {"settings": [{}, {}, {}]})
    assert ids == ["ab12_00003.0", "ab12_00003.1", "ab12_00003.2"]
    assert {tune_trial_of(i) for i in ids} == {"ab12_00003"}


# ------------------------------------------------------------------ sweeps
def _sweep(root: Path, name: str, *extra: str):
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    p = sweeper("run", "--space", "space.yaml", "--experiment", name, "--num-samples",
                str(NUM), "--seeds", str(SEEDS), "--search", "random", "--sampler-seed", "3",
                "--max-concurrent", "2", *extra, cwd=root)
    assert p.returncode == 0, p.stderr[-3000:]
    c = store.client(f"sqlite:///{root}/mlflow.db")
    exp = c.get_experiment_by_name(name)
    by_kind: dict[str, list] = {}
    for r in c.search_runs([exp.experiment_id], max_results=1000):
        by_kind.setdefault(r.data.tags.get(tags.TAG_KIND), []).append(r)
    study = optuna.load_study(study_name=name, storage="sqlite:///" + str(
        sweep_path(root / "sweeps", name) / "optuna.db"))
    return p, by_kind, study


def _settings(trial_runs) -> dict[tuple, tuple]:
    """(gp_lambda, lr_d) -> (status, objective) of each setting's trial run."""
    out = {}
    for r in trial_runs:
        key = (round(float(r.data.params["gp_lambda"]), 12),
               round(float(r.data.params["lr_d"]), 12))
        out[key] = (r.data.tags[tags.TAG_STATUS], metrics_of(r).get(names.OBJECTIVE))
    return out


@pytest.mark.slow
def test_fused_logs_the_same_runs_values_and_statuses_as_unfused(tmp_path):
    # Random search with one sampler seed proposes the same settings in the same order
    # whether they train one per trial or four per trial; without early stopping each must
    # end the same way, with the same objective (members of a population equal single runs
    # up to float round-off, tests/trainers/test_population.py).
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, plain, plain_study = _sweep(tmp_path / "a", "plain", "--no-early-stop")
    p, fused, fused_study = _sweep(tmp_path / "b", "fused", "--no-early-stop", "--fuse", "4")
    for by_kind in (plain, fused):
        assert len(by_kind["trial"]) == NUM and len(by_kind["seed"]) == NUM * SEEDS
        assert len({r.data.tags[tags.TAG_TRIAL] for r in by_kind["trial"]}) == NUM
    a, b = _settings(plain["trial"]), _settings(fused["trial"])
    assert set(a) == set(b)
    for key, (status, value) in a.items():
        assert b[key][0] == status == "finished"
        assert b[key][1] == pytest.approx(value, abs=1e-3), key
    # Every seed run hangs under its own setting's run, and the tables show every setting.
    parents = {r.info.run_id for r in fused["trial"]}
    assert {r.data.tags[tags.PARENT_TAG] for r in fused["seed"]} == parents
    rows = [x for x in p.stdout.splitlines() if x.startswith("| ") and "|---" not in x]
    assert len(rows) == NUM + 1, p.stdout
    assert p.stdout.count("finished at step 40") == NUM
    # Optuna: one COMPLETE trial per setting, with the run's objective, named by setting.
    for study, runs in ((plain_study, plain["trial"]), (fused_study, fused["trial"])):
        done = {t.user_attrs[TUNE_TRIAL_ATTR]: t.value for t in study.trials
                if t.state == optuna.trial.TrialState.COMPLETE}
        assert done == pytest.approx({r.data.tags[tags.TAG_TRIAL]: metrics_of(r)[
            names.OBJECTIVE] for r in runs})
    assert {tune_trial_of(t) for t in (r.data.tags[tags.TAG_TRIAL] for r in fused["trial"])
            }.__len__() == 2  # 8 settings in 2 trials of 4


@pytest.mark.slow
def test_halving_inside_a_fused_trial_prunes_in_optuna_and_stops_in_mlflow(tmp_path):
    p, by_kind, study = _sweep(tmp_path, "halved", "--fuse", "4", "--grace", "0.25",
                               "--reduction-factor", "2")
    trials = {r.data.tags[tags.TAG_TRIAL]: r for r in by_kind["trial"]}
    assert len(trials) == NUM
    states = {t.user_attrs[TUNE_TRIAL_ATTR]: t for t in study.trials}
    assert set(states) == set(trials)
    # Rungs at steps 10 and 20 with eta 2: of 4 settings, 2 then 1 go on to step 40.
    for group in {tune_trial_of(t) for t in trials}:
        mine = {t: r for t, r in trials.items() if tune_trial_of(t) == group}
        assert len(mine) == 4
        stopped = {t: int(r.data.tags[tags.TAG_STOPPED_AT]) for t, r in mine.items()
                   if r.data.tags[tags.TAG_STATUS] == "stopped_early"}
        assert sorted(stopped.values()) == [10, 10, 20]
        for t, r in mine.items():
            seeds = [s for s in by_kind["seed"] if s.data.tags[tags.PARENT_TAG] == r.info.run_id]
            assert len(seeds) == SEEDS
            if t in stopped:
                assert r.info.status == "FINISHED" and names.OBJECTIVE not in metrics_of(r)
                assert states[t].state == optuna.trial.TrialState.PRUNED
                assert metrics_of(r)[names.STEP] == stopped[t]
                assert {s.data.tags[tags.TAG_STATUS] for s in seeds} <= {"stopped_early",
                                                                         "diverged"}
            else:
                assert r.data.tags[tags.TAG_STATUS] == "finished"
                assert states[t].state == optuna.trial.TrialState.COMPLETE
                assert states[t].value == pytest.approx(metrics_of(r)[names.OBJECTIVE])
    assert p.stdout.count("stopped early (halving)") == 6
    assert "stopped@10" in p.stdout and "stopped@20" in p.stdout
    # `sweeper stable` reads the fused sweep like any other.
    s = sweeper("stable", "--experiment", "halved", "--tracking-uri",
                f"sqlite:///{tmp_path}/mlflow.db", cwd=tmp_path)
    assert s.returncode == 0, s.stderr[-2000:]
    assert sum(t in s.stdout for t in trials) == NUM


def test_fuse_must_be_a_count_or_auto(tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    p = sweeper("run", "--space", "space.yaml", "--fuse", "two", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--fuse must be a positive number of settings or auto, got 'two'" in p.stderr
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**SPACE, "fuse": 0}))
    p = sweeper("run", "--space", "bad.yaml", cwd=tmp_path)
    assert p.returncode == 2 and "'fuse' must be a positive number" in p.stderr


@pytest.mark.slow
def test_a_fused_trial_that_raises_fails_each_of_its_settings(tmp_path):
    # device=cuda on this GPU-less machine makes the trainer raise inside the trial (the
    # driver cannot foresee it: a real cluster's workers may have GPUs). Device is a field
    # members share, so every setting of the trial is on it.
    space = {**SPACE, "params": {**SPACE["params"], "device": {"choice": ["cuda"]}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    p = sweeper("run", "--space", "space.yaml", "--experiment", "raising", "--num-samples",
                "4", "--seeds", "1", "--fuse", "2", "--max-failures", "0", "--no-early-stop",
                "--sampler-seed", "1", cwd=tmp_path)
    assert p.returncode == 1, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    c = store.client(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.get_experiment_by_name("raising")
    trial_runs = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tags.TAG_KIND}` = "
                               "'trial'")
    assert len(trial_runs) == 4
    assert {(r.data.tags[tags.TAG_STATUS], r.info.status) for r in trial_runs} == {
        ("error", "FAILED")}
    study = optuna.load_study(study_name="raising", storage="sqlite:///" + str(
        sweep_path(tmp_path / "sweeps", "raising") / "optuna.db"))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 4
    assert "4 of 4 settings failed" in p.stderr
    assert len([x for x in p.stdout.splitlines() if x.startswith("| ") and "| error |" in x]) == 4


def test_settings_still_training_when_a_fused_trial_stops_get_a_line_each(capsys):
    # A budget stop or an error ends a fused trial with settings still "running": each gets
    # its own progress line, with the step it reached (its summary carries one, like the
    # settings that ended).
    import json
    from types import SimpleNamespace

    from sweeper.tune.progress import ProgressCallback
    from sweeper.tune.trial_ids import SETTINGS, summary

    done = summary("t1.0", "stopped_early", 10, "r0", {names.RUNNING_OBJECTIVE: 2.5})
    running = summary("t1.1", "running", 20, "r1", {names.RUNNING_OBJECTIVE: 0.4})
    trial = SimpleNamespace(trial_id="t1", config={"settings": [{"lr_d": 1e-3}, {"lr_d": 2e-3}]},
                            last_result={SETTINGS: json.dumps([done, running])})
    ProgressCallback(["lr_d"], 2, 2).on_trial_error(0, [], trial)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "[1/2] t1.0 stopped early (halving) at step 10: objective 2.5000, seeds ok -, HQ -, "
        "modes -, score - | lr_d=0.001",
        "[2/2] t1.1 error at step 20: objective 0.4000, seeds ok -, HQ -, modes -, score - | "
        "lr_d=0.002"]


def test_a_fused_trial_before_its_first_evaluation_shows_what_it_trains(capsys):
    # Half a trial's time can pass before its first evaluation; the running table said
    # "starting" with no params for all of it.
    from types import SimpleNamespace

    from sweeper.tune.progress import ProgressCallback

    batch = [{"loss": "wgan-gp", "n_critic": 2, "lr_d": 1e-3},
             {"loss": "wgan-gp", "n_critic": 2, "lr_d": 2e-3}]
    trial = SimpleNamespace(trial_id="t1", status="RUNNING", config={"settings": batch},
                            last_result={})
    ProgressCallback(["loss", "n_critic", "lr_d"], 4, 2, every_s=0).on_step_end(1, [trial])
    assert capsys.readouterr().out.splitlines()[1] == (
        "   t1 training: 2 settings, no evaluation yet | loss=wgan-gp, n_critic=2")


def test_a_setting_still_training_reports_the_same_summary_shape_as_an_ended_one():
    from sweeper.tune.trial import TrialContext, _Setting

    ctx = TrialContext(sweep="s", sweep_key="s", fixed=SPACE["fixed"], seeds=(0, 1),
                       tracking_uri="", experiment_id="", parent_run_id="",
                       cpus_per_trial=1, spool_dir="")
    s = _Setting(ctx, "t1.0", {"gp_lambda": 1.0, "lr_d": 1e-3}, "cpu")
    s.agg = {names.STEP: 20.0, names.RUNNING_OBJECTIVE: 0.5}
    assert s.state() == {"id": "t1.0", "status": "running", "step": 20, "run_id": None,
                         "metrics": s.agg}
