"""sweeper.track.reader against a real MLflow SQLite store: `load_sweep` turns a sweep's runs
back into records (typed params, per-seed metrics, the recorded success rule and objective,
the sampled params of space.yaml), `settings` picks sweep or confirm seeds per trial,
unfinished and abandoned trials are handled as documented, `used_seeds`, `metric_history`,
`require_finished`, and the one-line errors for a missing store or experiment.

The stores are built by hand the way the product writes them (driver.open_parent_run,
trial._TrialLogs, confirm._train_group), with the project's own RunLogger / RunSpec /
find_or_create_run. The helpers below are reused by tests/sweeper/analyse/test_report.py and
test_confirm.py.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from mlflow.entities import Metric  # noqa: E402

from sweeper.analyse import objective  # noqa: E402
from sweeper.errors import UserError  # noqa: E402
from sweeper.track import reader, store, tags  # noqa: E402
from trainers import names  # noqa: E402
from trainers.config import make_config  # noqa: E402
from trainers.quality import DEFAULT_RULE, LEGACY_RULE, SuccessRule  # noqa: E402

SWEEP = "tiny 'gp' sweep"
# A tiny valid config (trains in well under a second on one CPU thread).
TINY = {"dataset": "ring8", "steps": 4, "eval_every": 2, "hidden": 8, "depth": 1,
        "batch_size": 16, "eval_samples": 200, "device": "cpu"}
SAMPLED = {"gp_lambda": {"log_uniform": [0.1, 100]}, "n_critic": {"int": [1, 3]}}

# ------------------------------------------------------------------------------ helpers
# Building MLflow's schema in a new SQLite file takes seconds (Alembic migrations); it is
# built once per test process and each store starts as a copy of that empty database.
_TEMPLATE: dict[str, Path] = {}


def empty_db(folder: Path, tmp_path_factory) -> str:
    """The URI of a new, empty MLflow SQLite store in `folder`."""
    if "db" not in _TEMPLATE:
        d = tmp_path_factory.mktemp("mlflow-template")
        store.client(f"sqlite:///{d}/mlflow.db").search_experiments()
        _TEMPLATE["db"] = d / "mlflow.db"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE["db"], folder / "mlflow.db")
    return f"sqlite:///{folder}/mlflow.db"


@dataclass
class SweepStore:
    uri: str
    client: Any
    exp_id: str
    name: str
    sweep_key: str
    parent_run_id: str | None


def sweep_store(folder: Path, tmp_path_factory, name: str = SWEEP, *, parent: bool = True,
                rule: SuccessRule = DEFAULT_RULE, objective_name: str = "quality",
                sampled: Mapping[str, Any] = SAMPLED, fixed: Mapping[str, Any] = TINY,
                parent_params: Mapping[str, str] | None = None) -> SweepStore:
    """An experiment with the sweep's parent run, as driver.open_parent_run writes it (its
    artifacts stay under `folder`)."""
    uri = empty_db(folder, tmp_path_factory)
    client = store.client(uri)
    exp_id = client.create_experiment(name, artifact_location=(folder / "artifacts").as_uri(),
                                      tags={tags.TAG_EXPERIMENT_KIND: tags.EXPERIMENT_KIND})
    sweep_key = store.safe_key("sweep", hashlib.sha1(name.encode()).hexdigest()[:16])
    run_id = None
    if parent:
        run_id, _ = store.find_or_create_run(
            client, exp_id, sweep_key, name="sweep-tiny",
            tags={tags.TAG_KIND: "sweep", tags.TAG_SWEEP: name, tags.TAG_SPACE: "tiny",
                  tags.TAG_COMMAND: "sweeper run --space tiny.yaml"})
        logger = store.RunLogger(client, run_id)
        logger.log_params({"space": "tiny", "num_samples": 4, "seeds": 3, "search": "tpe",
                           "objective": objective_name, **objective.rule_params(rule),
                           **{f"fixed.{k}": v for k, v in fixed.items()},
                           **(parent_params or {})})
        logger.log_text(yaml.safe_dump({"description": "tiny", "fixed": dict(fixed),
                                        "params": dict(sampled)}, sort_keys=False),
                        "space.yaml")
    return SweepStore(uri, client, exp_id, name, sweep_key, run_id)


def final(held: float = 8, *, fid: float = 0.5, score: float = 0.1, hq: float = 0.5,
          kl: float = 0.05, step: int = 4, grad: float = 1.0,
          diverged: bool = False) -> dict[str, float]:
    """A seed's last metrics as the trainer logs them (ring8: 8 modes); it succeeds when it
    holds all 8 modes and did not diverge."""
    if diverged:
        return {names.STEP: float(step), names.DIVERGED: 1.0, names.NUM_MODES: 8.0,
                names.MODES_COVERED: 0.0, names.MODES_HELD: 0.0, names.HQ_FRACTION: 0.0,
                names.SEED_SCORE: 1.0, names.SEED_SUCCESS: 0.0}
    return {names.STEP: float(step), names.NUM_MODES: 8.0, names.MODES_COVERED: float(held),
            names.MODES_HELD: float(held), names.HQ_FRACTION: hq, names.MODE_KL: kl,
            names.FID: fid, names.FID_N: 200.0, names.SEED_SCORE: score,
            names.SEED_SUCCESS: float(held >= 8), names.DIVERGED: 0.0, names.GRAD_NORM: grad}


def _sample_figure():
    fig, ax = plt.subplots(figsize=(1, 1), dpi=40)
    ax.scatter([0, 1], [1, 0])
    return fig


def add_trial(s: SweepStore, trial_id: str, seeds: Sequence[Mapping[str, float] | None], *,
              values: Mapping[str, Any] | None = None, status: str = "finished",
              n_seeds: int | None = None, samples: bool = False) -> str:
    """A trial run and its seed runs, as trial._TrialLogs logs them; returns the trial run id.

    `seeds[j]` is seed j's last metrics (an evaluation at half its step, with half the modes
    held and twice the gradient norm, is logged before it), or None for a seed run that never
    reached MLflow. `n_seeds` is the trial's `seeds` param (default len(seeds)). Status
    "running" leaves the runs open, as a live trial does; seed runs of a diverged seed close
    as `diverged`. `samples` logs a sample plot per seed.
    """
    values = {**TINY, **(values or {})}
    n = len(seeds) if n_seeds is None else n_seeds
    configs = [make_config({**values, "seed": j}) for j in range(n)]
    key = store.safe_key("trial", s.sweep_key, trial_id)
    run_tags = {tags.TAG_SWEEP: s.name, tags.TAG_TRIAL: trial_id, tags.TAG_NODE: "127.0.0.1",
                tags.TAG_NODE_ID: "local", tags.TAG_STATUS: "running"}
    trial = store.RunLogger(
        s.client, spec=store.RunSpec(s.exp_id, key, f"{trial_id}-{configs[0].loss}",
                                     {**run_tags, tags.TAG_KIND: "trial"},
                                     parent_run_id=s.parent_run_id),
        params={**configs[0].to_dict(), "seeds": len(configs)}, tags=run_tags)
    assert trial.ensure_run()
    finals = []
    for cfg, m in zip(configs, seeds, strict=False):
        if m is None:
            continue
        seed = store.RunLogger(
            s.client, spec=store.RunSpec(
                s.exp_id, store.safe_key(key, "seed", cfg.seed), f"{trial_id}-seed{cfg.seed}",
                {**run_tags, tags.TAG_KIND: "seed", tags.TAG_SEED: str(cfg.seed)},
                parent_key=key),
            params=cfg.to_dict(), tags={**run_tags, tags.TAG_SEED: str(cfg.seed)})
        step = int(m[names.STEP])
        if step >= 2:
            mid = {**m, names.STEP: float(step // 2), names.MODES_HELD: m[names.MODES_HELD] / 2}
            if names.GRAD_NORM in m:
                mid[names.GRAD_NORM] = 2 * m[names.GRAD_NORM]
            seed.log_metrics(step // 2, mid)
        seed.log_metrics(step, m)
        if samples:
            seed.log_figure(_sample_figure(), f"plots/samples_step{step:07d}.png")
        if status == "running":
            assert seed.flush()
        else:
            assert seed.close("diverged" if m.get(names.DIVERGED) else status)
        finals.append(dict(m))
    if finals:
        trial.log_metrics(max(int(m[names.STEP]) for m in finals),
                          objective.aggregate(finals))
    if status == "running":
        assert trial.flush()
    else:
        assert trial.close(status)
    return trial.run_id


def add_confirm(s: SweepStore, trial_run_id: str, trial_id: str, seed: int,
                metrics: Mapping[str, float], *, smoke: bool = False,
                status: str = "finished") -> str:
    """A confirm run of a trial, as confirm._train_group logs it; returns its run id."""
    key = store.safe_key("confirm", s.parent_run_id, trial_id, "seed", seed)
    run_id, _ = store.find_or_create_run(
        s.client, s.exp_id, key, name=f"{trial_id}-confirm-seed{seed}",
        parent_run_id=s.parent_run_id,
        tags={tags.TAG_KIND: tags.KIND_CONFIRM, tags.TAG_SWEEP: s.name,
              tags.TAG_TRIAL: trial_id, tags.TAG_SEED: str(seed),
              tags.TAG_CONFIRM_OF: trial_run_id, tags.TAG_SMOKE: "1" if smoke else "0",
              tags.TAG_STATUS: "running"})
    logger = store.RunLogger(s.client, run_id)
    logger.log_params(make_config({**TINY, "seed": seed}).to_dict())
    logger.log_metrics(int(metrics[names.STEP]), metrics)
    assert logger.close(status)
    return run_id


# ------------------------------------------------------------------------------ one sweep
RULE = SuccessRule(min_coverage=0.75, min_mode_share=0.1, min_hq_ratio=0.3)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The store the read-only tests share: six trials in every state the reader tells
    apart, and confirm runs (two real ones, a smoke test, one that crashed)."""
    s = sweep_store(tmp_path_factory.mktemp("sweep"), tmp_path_factory, rule=RULE,
                    objective_name="fid")
    ids = {}
    # t2 is created first: the records come back in trial-id order, not creation order.
    ids["t2"] = add_trial(s, "t2", [final(fid=0.7), None, final(fid=0.8)],  # seed 1 lost
                          values={"gp_lambda": 0.5, "n_critic": 1})
    ids["t1"] = add_trial(s, "t1", [final(fid=0.2), final(fid=0.4), final(5, fid=0.9)],
                          values={"gp_lambda": 3.5, "n_critic": 2})
    ids["t3"] = add_trial(s, "t3", [final(step=2)] * 2, status="stopped_early")
    ids["t4"] = add_trial(s, "t4", [final(step=2)], status="running")
    ids["t5"] = add_trial(s, "t5", [final(step=2), final()])  # finished, a seed short
    ids["t6"] = add_trial(s, "t6", [final(), final(diverged=True, step=2)])
    ids["c7"] = add_confirm(s, ids["t1"], "t1", 7, final(fid=1.4))
    ids["c4"] = add_confirm(s, ids["t1"], "t1", 4, final(5, fid=1.3))
    ids["smoke"] = add_confirm(s, ids["t6"], "t6", 9, final(fid=9.0), smoke=True)
    ids["crashed"] = add_confirm(s, ids["t5"], "t5", 6, final(fid=9.0), status="error")
    return s, ids


def test_load_sweep_reads_the_parent_run_rule_objective_and_sampled_params(sweep):
    s, _ = sweep
    rec = reader.load_sweep(s.uri, SWEEP)
    assert (rec.experiment, rec.experiment_id, rec.tracking_uri) == (SWEEP, s.exp_id, s.uri)
    assert rec.parent_run_id == s.parent_run_id
    assert rec.rule == RULE and rec.objective == "fid"
    assert rec.sampled == ("gp_lambda", "n_critic")  # from the parent's space.yaml
    assert rec.parent_params["space"] == "tiny" and rec.parent_params["fixed.steps"] == "4"
    assert rec.parent_params["success.min_coverage"] == "0.75"


def test_trials_come_back_in_trial_order_with_typed_params_and_seed_metrics(sweep):
    s, ids = sweep
    rec = reader.load_sweep(s.uri, SWEEP)
    assert [t.trial_id for t in rec.trials] == ["t1", "t2", "t3", "t4", "t5", "t6"]
    assert [t.run_id for t in rec.trials] == [ids[f"t{j}"] for j in range(1, 7)]
    tr = rec.trial(ids["t1"])
    assert tr.status == "finished" and tr.expected_seeds == 3
    # Params come back typed, as TrialConfig fields; `seeds` is not one of them.
    assert tr.params["gp_lambda"] == 3.5 and isinstance(tr.params["gp_lambda"], float)
    assert tr.params["n_critic"] == 2 and isinstance(tr.params["n_critic"], int)
    assert tr.params["steps"] == 4 and tr.params["download"] is False
    assert tr.params["dataset"] == "ring8" and tr.params["loss"] == "wgan-gp"
    assert tr.params["seed"] == 0 and "seeds" not in tr.params
    assert [x.seed for x in tr.seeds] == [0, 1, 2]
    assert [x.status for x in tr.seeds] == ["finished"] * 3
    assert [x.metrics[names.FID] for x in tr.seeds] == [0.2, 0.4, 0.9]
    # The latest value of each metric (step 4), not the step-2 evaluation's.
    assert tr.seeds[2].metrics[names.MODES_HELD] == 5.0
    assert tr.seeds[2].metrics[names.STEP] == 4.0


def test_settings_carry_params_and_per_seed_metrics_missing_seeds_are_empty(sweep):
    s, ids = sweep
    got = {x.key: x for x in reader.settings(reader.load_sweep(s.uri, SWEEP),
                                             confirmed=False)}
    a = got[ids["t1"]]
    assert (a.label, a.source, a.complete, list(a.seed_ids)) == ("t1", "sweep", True, [0, 1, 2])
    assert a.params["gp_lambda"] == 3.5
    assert [m[names.FID] for m in a.seeds] == [0.2, 0.4, 0.9]
    assert [m[names.SEED_SUCCESS] for m in a.seeds] == [1.0, 1.0, 0.0]
    # t2 trained 3 seeds, but seed 1's run never reached MLflow: it counts as a seed that
    # measured nothing, and the trial is not at full budget.
    b = got[ids["t2"]]
    assert len(b.seeds) == 3 and b.seeds[2] == {}
    assert [m[names.FID] for m in b.seeds[:2]] == [0.7, 0.8]
    assert list(b.seed_ids) == [0, 2] and b.complete is False


def test_finished_stopped_running_and_short_trials_are_kept_only_full_ones_complete(sweep):
    s, ids = sweep
    rec = reader.load_sweep(s.uri, SWEEP)
    status = {t.trial_id: (t.status, t.complete) for t in rec.trials}
    assert status == {
        "t1": ("finished", True),
        "t2": ("finished", False),  # a seed run missing
        "t3": ("stopped_early", False),
        "t4": ("running", False),
        "t5": ("finished", False),  # seed 0 stopped at step 2 of 4
        "t6": ("finished", True),  # a diverged seed stops early by design
    }
    assert [x.status for x in rec.trial(ids["t6"]).seeds] == ["finished", "diverged"]
    assert [x.status for x in rec.trial(ids["t4"]).seeds] == ["running"]
    complete = {x.label: x.complete for x in reader.settings(rec, confirmed=False)}
    assert complete == {k: v[1] for k, v in status.items()}


def test_confirm_runs_are_attached_and_replace_their_trials_seeds(sweep):
    s, ids = sweep
    rec = reader.load_sweep(s.uri, SWEEP)
    by_run = {c.run_id: c for c in rec.confirms}
    assert set(by_run) == {ids["c7"], ids["c4"], ids["smoke"], ids["crashed"]}
    c4 = by_run[ids["c4"]]
    assert (c4.confirm_of, c4.seed, c4.status, c4.smoke) == (ids["t1"], 4, "finished", False)
    assert c4.metrics[names.FID] == 1.3
    assert (by_run[ids["smoke"]].smoke, by_run[ids["crashed"]].status) == (True, "error")
    t1 = next(x for x in reader.settings(rec) if x.key == ids["t1"])
    # Represented by its fresh seeds, in seed order, as a complete setting.
    assert (t1.source, t1.complete, list(t1.seed_ids)) == ("confirm", True, [4, 7])
    assert [m[names.FID] for m in t1.seeds] == [1.3, 1.4]
    assert [m[names.SEED_SUCCESS] for m in t1.seeds] == [0.0, 1.0]


def test_smoke_and_crashed_confirm_runs_never_replace_estimates(sweep):
    s, ids = sweep
    got = {x.key: x for x in reader.settings(reader.load_sweep(s.uri, SWEEP))}
    assert [x.source for x in got.values()].count("confirm") == 1  # t1 only
    t6, t5 = got[ids["t6"]], got[ids["t5"]]
    assert (t6.source, list(t6.seed_ids)) == ("sweep", [0, 1])
    assert t6.seeds[1][names.DIVERGED] == 1.0
    assert (t5.source, list(t5.seed_ids), t5.complete) == ("sweep", [0, 1], False)
    assert all(m.get(names.FID) != 9.0 for x in got.values() for m in x.seeds)


def test_used_seeds_covers_sweep_and_every_confirm_seed(sweep):
    s, _ = sweep
    # Sweep seeds 0-2, confirm seeds 4 and 7, the smoke test's 9 and the crashed run's 6.
    assert reader.load_sweep(s.uri, SWEEP).used_seeds() == {0, 1, 2, 4, 6, 7, 9}


def test_used_seeds_ignores_seed_runs_without_a_seed_tag():
    seed = reader.SeedRun("r", -1, "finished", {})
    trial = reader.TrialRun("t", "t1", "finished", {}, 1, (seed,))
    rec = reader.SweepRecords("e", "1", "sqlite:///x.db", None, {}, (trial,), ())
    assert rec.used_seeds() == set()


def test_runs_are_read_page_by_page(sweep, monkeypatch):
    s, ids = sweep
    whole = reader.load_sweep(s.uri, SWEEP)
    monkeypatch.setattr(reader, "_PAGE", 3)  # 1 + 6 + 12 + 4 = 23 runs: 8 pages
    paged = reader.load_sweep(s.uri, SWEEP)
    assert len(reader.all_runs(s.client, s.exp_id)) == 23
    assert len({r.info.run_id for r in reader.all_runs(s.client, s.exp_id)}) == 23
    assert paged.trials == whole.trials
    assert sorted(c.run_id for c in paged.confirms) == sorted(c.run_id for c in whole.confirms)


# ------------------------------------------------------------------------------ metrics
def test_metric_history_is_in_step_order(tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory, parent=False)
    run = s.client.create_run(s.exp_id).info.run_id
    # Logged out of order (a retried evaluation arrives late), in two batches.
    s.client.log_batch(run, metrics=[Metric(names.FID, 3.0, 0, 30),
                                     Metric(names.FID, 1.0, 0, 10)])
    s.client.log_batch(run, metrics=[Metric(names.FID, 2.0, 0, 20),
                                     Metric(names.FID, 0.5, 0, 0),
                                     Metric(names.MODE_KL, 9.0, 0, 5)])
    hist = reader.metric_history(s.client, run, names.FID)
    assert hist == [(0, 0.5), (10, 1.0), (20, 2.0), (30, 3.0)]
    assert all(isinstance(st, int) and isinstance(v, float) for st, v in hist)
    assert reader.metric_history(s.client, run, names.MODE_KL) == [(5, 9.0)]
    assert reader.metric_history(s.client, run, "never_logged") == []


def test_metric_history_of_a_seed_run_as_the_trial_logged_it(sweep):
    s, ids = sweep
    seed2 = reader.load_sweep(s.uri, SWEEP).trial(ids["t1"]).seeds[2].run_id
    assert reader.metric_history(s.client, seed2, names.MODES_HELD) == [(2, 2.5), (4, 5.0)]
    assert reader.metric_history(s.client, seed2, names.GRAD_NORM) == [(2, 2.0), (4, 1.0)]


# ------------------------------------------------------------------------------ states
def test_abandoned_trials_are_left_out(tmp_path, tmp_path_factory):
    from sweeper.tune.marks import mark_abandoned_runs

    s = sweep_store(tmp_path, tmp_path_factory)
    kept = add_trial(s, "t1", [final()])
    cut = add_trial(s, "t2", [final(step=2)], status="running", n_seeds=3)
    # A driver crash cut t2 off before Tune's snapshot: the resume marks it abandoned.
    assert mark_abandoned_runs(s.uri, s.exp_id, {"t1"}) == 1
    assert s.client.get_run(cut).data.tags[tags.TAG_STATUS] == "abandoned"
    rec = reader.load_sweep(s.uri, SWEEP)
    assert [t.run_id for t in rec.trials] == [kept]
    assert [x.key for x in reader.settings(rec)] == [kept]


def test_a_stop_signal_marks_cut_off_settings_but_not_those_halving_stopped(
        tmp_path, tmp_path_factory):
    # A fused Tune trial "abc" cut off by Ctrl-C: its setting still training is interrupted
    # (the resume reopens it); the one halving already stopped has ended and stays so.
    from sweeper.tune.marks import mark_interrupted_runs

    s = sweep_store(tmp_path, tmp_path_factory)
    running = add_trial(s, "abc.0", [final(step=2)], status="running")
    halved = add_trial(s, "abc.1", [final(step=2)], status="stopped_early")
    done = add_trial(s, "xyz", [final()])
    assert mark_interrupted_runs(s.uri, s.exp_id, {"abc"}) == 1
    status = {r: s.client.get_run(r).data.tags[tags.TAG_STATUS] for r in (running, halved, done)}
    assert status == {running: "interrupted", halved: "stopped_early", done: "finished"}


def test_require_finished_names_the_statuses_in_one_line(tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory)
    add_trial(s, "t1", [final(step=2)], status="stopped_early")
    add_trial(s, "t2", [final(step=2)], status="running")
    add_trial(s, "t3", [final(step=2)], status="stopped_early")
    with pytest.raises(UserError) as e:
        reader.require_finished(reader.load_sweep(s.uri, SWEEP))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"experiment {SWEEP!r} has no finished trials (1 running, 2 stopped_early)" in msg
    assert "sweeper run --resume" in msg
    add_trial(s, "t4", [final()])
    reader.require_finished(reader.load_sweep(s.uri, SWEEP))  # one finished trial suffices


def test_require_finished_on_a_sweep_without_trials(tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory)
    with pytest.raises(UserError, match=r"has no finished trials \(no trial runs\)"):
        reader.require_finished(reader.load_sweep(s.uri, SWEEP))


# ------------------------------------------------------------------------------ the rule
def test_a_sweep_that_recorded_no_rule_or_objective_reads_as_legacy(tmp_path, tmp_path_factory):
    legacy = reader.SweepRecords("e", "1", "sqlite:///x.db", None, {}, (), ())
    assert (legacy.rule, legacy.objective) == (LEGACY_RULE, "fid")
    # A parent run without success.* and objective params (logged before they existed).
    s = sweep_store(tmp_path, tmp_path_factory, parent=False)
    rid, _ = store.find_or_create_run(s.client, s.exp_id, "sweep/old", name="sweep-old",
                                      tags={tags.TAG_KIND: "sweep", tags.TAG_SWEEP: SWEEP})
    s.client.log_param(rid, "space", "tiny")
    rec = reader.load_sweep(s.uri, SWEEP)
    assert rec.parent_run_id == rid and rec.parent_params == {"space": "tiny"}
    assert rec.rule == LEGACY_RULE and rec.objective == "fid" and rec.sampled == ()


def test_the_default_rule_and_an_unknown_objective(tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory, objective_name="beauty")
    rec = reader.load_sweep(s.uri, SWEEP)
    assert rec.rule == DEFAULT_RULE and rec.objective == "fid"


def test_a_damaged_success_rule_is_a_one_line_user_error(tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory)
    s.client.log_param(s.parent_run_id, "success.bogus_field", "0.5")
    with pytest.raises(UserError) as e:
        reader.load_sweep(s.uri, SWEEP)
    msg = str(e.value)
    assert "\n" not in msg and "damaged success rule" in msg and "success.bogus_field" in msg


def test_a_sweep_without_parent_run_still_loads(tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory, parent=False)
    t = add_trial(s, "t1", [final()])
    rec = reader.load_sweep(s.uri, SWEEP)
    assert rec.parent_run_id is None and rec.parent_params == {} and rec.sampled == ()
    assert [x.run_id for x in rec.trials] == [t] and rec.trials[0].complete


def test_non_numeric_seed_tags_do_not_break_loading(tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory)
    t = add_trial(s, "t1", [final(), final()])
    seed0 = reader.load_sweep(s.uri, SWEEP).trial(t).seeds[0].run_id
    s.client.set_tag(seed0, tags.TAG_SEED, "zero")
    rec = reader.load_sweep(s.uri, SWEEP)
    assert [x.seed for x in rec.trial(t).seeds] == [-1, 1]
    assert rec.used_seeds() == {1}
    assert math.isfinite(rec.trial(t).seeds[0].metrics[names.FID])


# ------------------------------------------------------------------------------ errors
def test_a_missing_experiment_is_a_one_line_user_error_naming_the_known_ones(sweep):
    s, _ = sweep
    with pytest.raises(UserError) as e:
        reader.load_sweep(s.uri, "nope")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"no MLflow experiment named 'nope' at {s.uri}")
    assert f"(experiments there: {SWEEP!r})" in msg and "--experiment" in msg


def test_a_missing_database_is_a_user_error_and_is_not_created(tmp_path):
    db = tmp_path / "absent.db"
    with pytest.raises(UserError) as e:
        reader.load_sweep(f"sqlite:///{db}", SWEEP)
    assert "\n" not in str(e.value) and "does not exist" in str(e.value)
    assert not db.exists()


def test_a_deleted_experiment_is_a_user_error(tmp_path, tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory)
    s.client.delete_experiment(s.exp_id)
    with pytest.raises(UserError, match="is deleted"):
        reader.load_sweep(s.uri, SWEEP)
