"""Whether a resume may restore the sweep folder's Tune state, or must rebuild the sweep
from the Optuna study and MLflow (sweeper.tune.rebuild), and how a trial reads its checkpoint.

The state files here are built by hand in the formats Tune writes: the experiment state is
JSON whose trials carry a cloudpickled StorageContext (only the two fields the check reads
are set), the searcher and generator states are cloudpickles. The end-to-end cases, on a real
sweep with a real SIGKILL, are in test_reliability.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from ray import cloudpickle

from sweeper.tune.rebuild import SESSION_FILE, close_session, open_session, tune_state_problem

SESSION = "2026-01-01_00-00-00"


def experiment_state(sweep: Path, trials: dict[str, str]) -> str:
    storage = SimpleNamespace(storage_fs_path=str(sweep.parent), experiment_dir_name=sweep.name)
    value = cloudpickle.dumps(storage).hex()
    data = [[json.dumps({"trial_id": tid, "status": status,
                         "storage": {"_type": "CLOUDPICKLE_FALLBACK", "value": value}}), {}]
            for tid, status in trials.items()]
    return json.dumps({"trial_data": data, "runner_data": {}, "stats": {}})


def generator_state(counter: int, live: set[str]) -> bytes:
    return cloudpickle.dumps({"counter": counter, "total_samples": 5, "finished": False,
                              "name:ConcurrencyLimiter": {
                                  "max_concurrent": 1, "batch": False, "live_trials": live,
                                  "num_unfinished_live_trials": len(live)}})


def write_set(d: Path, sweep: Path, trials: dict[str, str], searcher: object, counter: int,
              live: set[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"experiment_state-{SESSION}.json").write_text(experiment_state(sweep, trials))
    (d / f"searcher-state-{SESSION}.pkl").write_bytes(cloudpickle.dumps(searcher))
    (d / f"search_gen_state-{SESSION}.json").write_bytes(generator_state(counter, live))
    (d / "tuner.pkl").write_bytes(cloudpickle.dumps({"a": "tuner"}))


def staging(tmp_path: Path, sweep: Path) -> Path:
    return tmp_path / "ray" / "session_1" / "artifacts" / "t0" / sweep.name / "driver_artifacts"


class _Planted:
    """Unpickling this runs `touch <marker>`: what a hostile user could plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_in_rays_temp_folder_is_never_read(tmp_path, monkeypatch):
    # Ray's temp folder is shared by every user of the machine: a newer "snapshot" planted
    # there used to be checked by unpickling it, which ran its code. The sweep folder's own
    # state is all that is read, and nothing is written into it.
    sweep = tmp_path / "sweeps" / "s1"
    trials = {"a": "TERMINATED", "b": "RUNNING"}
    write_set(sweep, sweep, trials, {"knows": ["a", "b"]}, 2, {"b"})
    before = {f.name: f.read_bytes() for f in sweep.iterdir()}
    marker = tmp_path / "pwned"
    later = "2099-01-01_00-00-00"
    d = staging(tmp_path, sweep)
    d.mkdir(parents=True)
    (d / f"experiment_state-{later}.json").write_text(experiment_state(sweep, trials))
    for name in (f"searcher-state-{later}.pkl", f"search_gen_state-{later}.json"):
        (d / name).write_bytes(cloudpickle.dumps(_Planted(marker)))
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert tune_state_problem(sweep) is None
    assert not marker.exists()
    assert {f.name: f.read_bytes() for f in sweep.iterdir()} == before


def test_checking_the_sweeps_own_state_runs_nothing(tmp_path):
    # The check walks the pickle's opcodes; a whole pickle passes without being unpickled.
    sweep = tmp_path / "sweeps" / "s1"
    write_set(sweep, sweep, {"a": "TERMINATED"}, {"ok": 1}, 1, set())
    marker = tmp_path / "ran"
    (sweep / f"searcher-state-{SESSION}.pkl").write_bytes(cloudpickle.dumps(_Planted(marker)))
    assert tune_state_problem(sweep) is None
    assert not marker.exists()


def test_a_truncated_state_file_means_a_rebuild(tmp_path):
    sweep = tmp_path / "sweeps" / "s1"
    write_set(sweep, sweep, {"a": "TERMINATED"}, {"ok": 1}, 1, set())
    whole = (sweep / f"searcher-state-{SESSION}.pkl").read_bytes()
    (sweep / f"searcher-state-{SESSION}.pkl").write_bytes(whole[: len(whole) // 2])
    assert tune_state_problem(sweep) == f"searcher-state-{SESSION}.pkl is damaged"
    (sweep / f"search_gen_state-{SESSION}.json").write_bytes(b"\x80\x04trunc")
    assert "is damaged" in tune_state_problem(sweep)


def test_a_driver_that_did_not_stop_cleanly_means_a_rebuild(tmp_path):
    # A driver killed between writing Tune's files (a generator state a snapshot behind the
    # experiment state, a snapshot naming a checkpoint Tune already deleted) leaves files
    # that read fine but disagree. They are not repaired by hand: the session marker it
    # left says not to trust them, and the sweep is rebuilt from Optuna and MLflow.
    sweep = tmp_path / "sweeps" / "s1"
    write_set(sweep, sweep, {"a": "TERMINATED", "b": "TERMINATED", "c": "PENDING"}, {}, 2,
              {"b"})
    assert tune_state_problem(sweep) is None
    open_session(sweep)
    assert (sweep / SESSION_FILE).exists()
    assert "stopped without closing Tune's state" in tune_state_problem(sweep)
    close_session(sweep)
    assert tune_state_problem(sweep) is None
    (sweep / "tuner.pkl").unlink()
    assert tune_state_problem(sweep) == "tuner.pkl is missing"


def test_an_empty_checkpoint_restarts_the_trial_and_a_full_one_continues_it(tmp_path):
    # An empty checkpoint folder (its files lost) makes the trial start over instead of
    # failing.

    from sweeper.tune.trial import _restore
    from trainers.config import make_config
    from trainers.loop import Trainer
    from trainers.members import save_members

    empty = tmp_path / "checkpoint_000003"
    empty.mkdir()
    assert _restore(str(empty), ["a"], 1, "cpu")[0] is None
    t = Trainer(make_config({"dataset": "ring8", "loss": "wgan-gp", "steps": 4, "hidden": 8,
                             "depth": 1, "batch_size": 8, "eval_every": 2}))
    t.train_until(2)
    full = tmp_path / "checkpoint_000004"
    full.mkdir()
    save_members(t, full)  # a single run is a population of one
    restored = _restore(str(full), ["a"], 1, "cpu")[0]
    assert restored.step == 2 and restored.k == 1
    old = tmp_path / "checkpoint_000005"
    old.mkdir()
    (old / "seed0.pt").write_bytes(b"a checkpoint from before population training")
    # An old checkpoint starts over.
    assert _restore(str(old), ["a"], 1, "cpu")[0] is None


def test_a_population_checkpoint_continues_every_member(tmp_path):

    from sweeper.tune.trial import _restore
    from trainers.config import make_config
    from trainers.members import make_members, save_members
    from trainers.population import Population

    cfgs = [make_config({"dataset": "ring8", "loss": "wgan-gp", "steps": 4, "hidden": 8,
                         "depth": 1, "batch_size": 8, "eval_every": 2, "seed": s})
            for s in (0, 1)]
    members = make_members(cfgs)
    assert isinstance(members, Population)
    members.train_until(2)
    save_members(members, tmp_path)
    restored = _restore(str(tmp_path), ["a"], 2, "cpu")[0]
    assert isinstance(restored, Population) and restored.step == 2 and restored.k == 2


def test_a_cut_off_population_checkpoint_restarts_the_trial_with_a_warning(tmp_path, caplog):
    # Row 8 of reliability round 3: a damaged checkpoint is treated like a missing one.

    from sweeper.tune.trial import _restore
    from trainers.config import make_config
    from trainers.members import POPULATION_FILE, make_members, save_members

    cfgs = [make_config({"dataset": "ring8", "loss": "wgan-gp", "steps": 4, "hidden": 8,
                         "depth": 1, "batch_size": 8, "eval_every": 2, "seed": s})
            for s in (0, 1)]
    members = make_members(cfgs)
    members.train_until(2)
    save_members(members, tmp_path)
    f = tmp_path / POPULATION_FILE
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        assert _restore(str(tmp_path), ["a"], 2, "cpu")[0] is None
    assert "the trial starts over from step 0" in caplog.text


def test_a_setting_mlflow_saw_finish_ends_with_its_logged_result(tmp_path, monkeypatch):
    # The open bug of reliability round 3: a setting finished its budget as the stop came
    # (MLflow: finished with its objective; Tune's snapshot: running) and its checkpoint was
    # then lost. Retraining it from step 0 was cut off by Tune at the budget it had already
    # reached, and Optuna recorded it PRUNED. Its logged result ends it instead; only a run
    # MLflow saw finish with an objective counts.
    from sweeper.track import store, tags
    from sweeper.tune.trial import RUN_ID, TrialContext, _finished_result
    from trainers import names

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = store.client(uri)
    exp = store.experiment_id(client, "sweep")
    ctx = TrialContext(sweep="sweep", sweep_key="sweep", fixed={}, seeds=(0,),
                       tracking_uri=uri, experiment_id=exp, parent_run_id="",
                       cpus_per_trial=1, spool_dir=str(tmp_path / "spool"))

    def trial_run(trial_id: str, status: str, metrics: dict[str, float]) -> str:
        logger = store.RunLogger(client, spec=store.RunSpec(
            exp, store.safe_key("trial", "sweep", trial_id), trial_id, {}))
        logger.log_metrics(600, metrics)
        logger.close(status)
        return logger.run_id

    done = {names.OBJECTIVE: 0.7, names.RUNNING_OBJECTIVE: 0.7, names.STEP: 600.0}
    run_id = trial_run("a", "finished", done)
    assert _finished_result(ctx, ["a"], fused=False) == {**done, RUN_ID: run_id}
    trial_run("b", "interrupted", done)  # cut off by the stop: it trains again
    trial_run("c", "finished", {names.RUNNING_OBJECTIVE: 0.7, names.STEP: 300.0})
    assert _finished_result(ctx, ["b"], fused=False) is None
    assert _finished_result(ctx, ["c"], fused=False) is None
    assert _finished_result(ctx, ["never-seen"], fused=False) is None
    assert client.get_run(run_id).data.tags[tags.TAG_STATUS] == "finished"
    # MLflow unreachable: the trial trains again rather than fail (one quick try, as in a
    # trial, which sets these through store.quiet_http_retries).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    gone = TrialContext(**{**ctx.__dict__, "tracking_uri": "http://127.0.0.1:9"})
    assert _finished_result(gone, ["a"], fused=False) is None
