"""`sweeper run` end to end on a real local Ray, a real Optuna study and real MLflow (sqlite).

One small sweep (4 settings x 2 seeds, run one at a time so ASHA has something to compare)
is shared by the tests below; then the same sweep is resumed and must add nothing.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from sweeper.track import mlflow_view, store, tags
from sweeper.track.metric_keys import history, metrics_of
from trainers import names
from trainers.data import REAL_HQ_2D

pytestmark = pytest.mark.slow

SWEEPER = str(Path(sys.executable).with_name("sweeper"))
SPACE = {
    "description": "tiny compare space for tests",
    "fixed": {"dataset": "ring8", "steps": 60, "eval_every": 10, "eval_samples": 300,
              "hidden": 16, "depth": 2, "batch_size": 64},
    "params": {
        "loss": {"choice": ["bce-ns", "wgan-clip", "wgan-gp"]},
        "gp_lambda": {"log_uniform": [0.1, 100], "when": {"loss": "wgan-gp"}},
        "clip_value": {"log_uniform": [0.001, 1.0], "when": {"loss": "wgan-clip"}},
        "lr_d": {"log_uniform": [1e-4, 1e-2]},
    },
    "success": {"min_hq_ratio": 0.4, "min_mode_share": 0.3},  # the CLI overrides the share
}
NUM, SEEDS = 4, 2


def sweeper(*args, cwd, timeout=600, env=None):
    return subprocess.run([SWEEPER, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                                                **(env or {})})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    args = ["--space", "space.yaml", "--experiment", "it's a \"test\" sweep",
            "--num-samples", str(NUM), "--seeds", str(SEEDS), "--max-concurrent", "1",
            "--grace", "0.2", "--reduction-factor", "2", "--sampler-seed", "0",
            "--min-mode-share", "0.2"]
    t0 = time.time()
    p = sweeper("run", *args, cwd=root)
    assert p.returncode == 0, p.stderr[-3000:]
    return {"root": root, "args": args, "stdout": p.stdout, "stderr": p.stderr,
            "uri": f"sqlite:///{root}/mlflow.db", "name": "it's a \"test\" sweep",
            "wall": time.time() - t0}


def runs_of(sweep):
    c = store.client(sweep["uri"])
    exp = c.get_experiment_by_name(sweep["name"])  # quotes in the name: looked up, not spliced
    assert exp is not None
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    by_kind = {}
    for r in runs:
        by_kind.setdefault(r.data.tags.get(tags.TAG_KIND), []).append(r)
    return c, by_kind


def study_of(sweep):
    from sweeper.tune.driver import sweep_path

    path = sweep_path(sweep["root"] / "sweeps", sweep["name"]) / "optuna.db"
    return optuna.load_study(study_name=sweep["name"], storage=f"sqlite:///{path}")


def test_every_trial_and_seed_has_one_mlflow_run(sweep):
    c, kinds = runs_of(sweep)
    (parent,) = kinds["sweep"]
    trials, seeds = kinds["trial"], kinds["seed"]
    assert len(trials) == NUM and len(seeds) == NUM * SEEDS
    assert len({r.data.tags[tags.TAG_TRIAL] for r in trials}) == NUM
    for t in trials:
        assert t.data.tags[tags.PARENT_TAG] == parent.info.run_id
        assert t.data.params["dataset"] == "ring8" and "loss" in t.data.params
        assert t.data.tags[tags.TAG_NODE]
        assert names.RUNNING_OBJECTIVE in metrics_of(t)
    for s in seeds:
        parent_trial = [t for t in trials if t.info.run_id == s.data.tags[tags.PARENT_TAG]]
        assert len(parent_trial) == 1
        assert s.data.params["seed"] == s.data.tags[tags.TAG_SEED]
        hist = history(c, s.info.run_id, names.FID)
        steps = [m.step for m in hist]
        assert steps == sorted(set(steps)) and steps[0] == 10  # a curve, no duplicate steps
        assert any(a.path.startswith("plots/samples_step")
                   for a in c.list_artifacts(s.info.run_id, "plots"))
    assert "space.yaml" in [a.path for a in c.list_artifacts(parent.info.run_id)]
    assert parent.data.tags["gan_sweeper.git_commit"]


def test_the_success_rule_comes_from_the_space_then_the_command_line(sweep):
    import json

    from sweeper.tune.driver import OPTIONS_FILE, sweep_path

    c, kinds = runs_of(sweep)
    (parent,) = kinds["sweep"]
    params = parent.data.params
    assert params["objective"] == "quality"
    assert (params["success.min_hq_ratio"], params["success.min_mode_share"],
            params["success.min_coverage"]) == ("0.4", "0.2", "0.9")
    saved = json.loads((sweep_path(sweep["root"] / "sweeps", sweep["name"]) / OPTIONS_FILE)
                       .read_text())
    assert saved["rule"] == {"min_coverage": 0.9, "min_mode_share": 0.2, "min_hq_ratio": 0.4,
                             "min_coverage_ratio": 0.7, "min_precision_ratio": 0.5}
    assert saved["objective"] == "quality"
    for s in kinds["seed"]:  # every seed carries the verdict and the score
        m = metrics_of(s)
        assert m[names.SEED_SUCCESS] in (0.0, 1.0) and 0.0 <= m[names.SEED_SCORE] <= 1.0
        want = (m[names.MODES_HELD] >= 0.9 * m[names.NUM_MODES]
                and m[names.HQ_FRACTION] >= 0.4 * REAL_HQ_2D and not m[names.DIVERGED])
        assert m[names.SEED_SUCCESS] == want
    for t in kinds["trial"]:
        assert "seed_score_median" in metrics_of(t)


def test_asha_stopped_trials_reach_optuna_as_pruned_not_complete(sweep):
    c, kinds = runs_of(sweep)
    status = {r.data.tags[tags.TAG_TRIAL]: r for r in kinds["trial"]}
    study = study_of(sweep)
    states = [t.state for t in study.trials]
    assert len(study.trials) == NUM
    assert optuna.trial.TrialState.PRUNED in states, "ASHA stopped nothing: test is vacuous"
    finished = [r for r in status.values() if r.data.tags[tags.TAG_STATUS] == "finished"]
    stopped = [r for r in status.values()
               if r.data.tags[tags.TAG_STATUS] == "stopped_early"]
    assert len(finished) + len(stopped) == NUM and stopped
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(finished)
    complete_values = sorted(t.value for t in study.trials
                             if t.state == optuna.trial.TrialState.COMPLETE)
    final_objectives = sorted(metrics_of(r)[names.OBJECTIVE] for r in finished)
    assert complete_values == pytest.approx(final_objectives)
    assert all(math.isfinite(v) for v in complete_values)
    for r in stopped:  # a truncated trial never logged a final objective
        assert names.OBJECTIVE not in metrics_of(r)
        assert metrics_of(r)[names.STEP] < SPACE["fixed"]["steps"]
        # it did all the scheduler gave it: FINISHED, not KILLED (which reads as a crash)
        assert r.info.status == "FINISHED"
        assert r.data.tags[tags.TAG_STOPPED_AT] == str(int(metrics_of(r)[names.STEP]))


def test_progress_is_a_line_per_trial_and_the_ui_opens_on_the_runs(sweep):
    out = sweep["stdout"]
    ended = [line for line in out.splitlines() if line.startswith("[")]
    assert len(ended) == NUM and ended[-1].startswith(f"[{NUM}/{NUM}] ")
    assert all("seeds ok" in line and "lr_d=" in line for line in ended), ended
    for panel in ("Trial status:", "started with configuration", "Trial progress"):
        assert panel not in out  # Ray's per-trial panels
    assert len(out.splitlines()) < 60
    c = store.client(sweep["uri"])
    exp = c.get_experiment_by_name(sweep["name"])
    assert exp.tags[tags.TAG_EXPERIMENT_KIND] == tags.EXPERIMENT_KIND
    # The link opens the sweep's comparison view, which the sweep saved on its experiment.
    assert (f"#/experiments/{exp.experiment_id}/runs?viewStateShareKey=gan-sweeper&"
            "compareRunsMode=CHART&workflowType=machine_learning") in out
    view = mlflow_view.decode(exp.tags[mlflow_view.VIEW_TAG])
    assert view["compareRunCharts"][0]["selectedParams"] == list(SPACE["params"])
    (parent,) = c.search_runs([exp.experiment_id],
                              filter_string=f"tags.`{tags.TAG_KIND}` = 'sweep'")
    note = parent.data.tags[tags.TAG_NOTE]
    assert "| # | trial | status |" in note and note.count("\n| ") >= NUM


def test_final_table_ranks_finished_trials_first(sweep):
    out = sweep["stdout"]
    assert "Best settings of sweep" in out and "sweeper ui --tracking-uri" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "trial" not in line]
    assert len(rows) == NUM
    assert "finished" in rows[0]


def test_resume_of_a_finished_sweep_adds_nothing(sweep):
    client, kinds = runs_of(sweep)
    before = {k: len(v) for k, v in kinds.items()}
    (parent,) = kinds["sweep"]
    points = sorted(m.step for m in history(client, parent.info.run_id, "wall_seconds"))
    # No --experiment and other options: --resume picks the latest sweep and its saved options.
    p = sweeper("run", "--resume", "--seeds", "5", "--objective", "fid", "--min-hq-ratio", "0.9",
                cwd=sweep["root"])
    assert f"resuming sweep {sweep['name']!r}" in p.stderr and f"x {SEEDS} seeds" in p.stderr
    assert p.returncode == 0, p.stderr[-3000:]
    assert "m = median seed_score" in p.stdout  # the saved objective, not this command's
    after = {k: len(v) for k, v in runs_of(sweep)[1].items()}
    assert after == before
    assert len(study_of(sweep).trials) == NUM
    # Each driver session adds one wall-time point to the sweep's run, not a second value
    # at the same step.
    again = sorted(m.step for m in history(client, parent.info.run_id, "wall_seconds"))
    assert again == [*points, len(points)], (points, again)


def test_rerun_without_resume_is_refused(sweep):
    p = sweeper("run", *sweep["args"], cwd=sweep["root"])
    assert p.returncode == 2
    assert "already exists" in p.stderr and "--resume" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("args, needle", [
    (["--num-samples", "0"], "--num-samples must be at least 1"),
    (["--budget-steps", "-5"], "--budget-steps must be at least 0, got -5"),
    (["--space", "nope"], "unknown search space 'nope'"),
    (["--space", "bad.yaml"], "unknown key 'gp_lamda'"),
    (["--tracking-uri", "http://127.0.0.1:9"], "cannot reach the MLflow tracking server"),
    (["--address", "127.0.0.1:9"], "cannot reach a Ray cluster at 127.0.0.1:9"),
    (["--address", "ray://127.0.0.1:9"], "cannot reach a Ray cluster at ray://127.0.0.1:9"),
    (["--address", ""], "--address is empty"),
    (["--address", "127.0.0.1:-1"], "cannot reach a Ray cluster"),
    (["--seeds", "1001"], "--seeds must be between 1 and 1000"),
    (["--tracking-uri", "sqlite:///."], "names a folder"),
    (["--cpus-per-trial", "64"], "more than the cluster has"),
    (["--resume", "--experiment", "never-ran"], "no sweep named 'never-ran' to resume"),
    (["--search", "bayes"], "--search must be one of tpe, random, got 'bayes'"),
    (["--objective", "hq"], "--objective must be one of quality, fid, got 'hq'"),
    (["--min-coverage", "1.5"], "min_coverage must be a number in [0, 1], got 1.5"),
])
def test_bad_sweep_input_one_line_exit_2_before_any_trial(tmp_path, args, needle):
    (tmp_path / "bad.yaml").write_text("params: {gp_lamda: {log_uniform: [0.1, 1]}}\n")
    t0 = time.time()
    p = sweeper("run", "--smoke-test", *args, cwd=tmp_path, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and needle in last, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert time.time() - t0 < 90
    assert not list(tmp_path.glob("sweeps/*/run_trial_*"))  # no trial started


# ---------------------------------------------------------------------- --search tpe|random
def _options(tmp_path: Path, search: str):
    from sweeper.tune.driver import SweepOptions
    from sweeper.tune.spaces import load_space

    return SweepOptions(
        space=load_space("default"), name="s", num_samples=2, max_concurrent=1, seeds=1,
        tracking_uri="sqlite:///x.db", sweep_dir=tmp_path, max_failures=0, sampler_seed=5,
        command="t", search=search)


@pytest.mark.parametrize("search, sampler", [("tpe", optuna.samplers.TPESampler),
                                             ("random", optuna.samplers.RandomSampler)])
def test_search_option_picks_the_sampler_and_survives_save_restore(tmp_path, search, sampler):
    import json

    from sweeper.tune.driver import OPTIONS_FILE, restore_options, save_options
    from sweeper.tune.search import optuna_search

    opts = _options(tmp_path, search)
    searcher = optuna_search(opts, tmp_path)
    # Ray's OptunaSearch keeps the sampler it was given; the study is built from it.
    assert type(searcher._sampler) is sampler
    save_options(opts, tmp_path)
    assert json.loads((tmp_path / OPTIONS_FILE).read_text())["search"] == search
    other = "random" if search == "tpe" else "tpe"
    restored = restore_options(_options(tmp_path, other), tmp_path)
    assert restored.search == search  # the saved choice wins over the resuming command's


def test_tpe_startup_and_multivariate_reach_the_sampler_and_are_saved(tmp_path):
    import dataclasses
    import json

    from sweeper.tune.driver import OPTIONS_FILE, restore_options, save_options
    from sweeper.tune.search import optuna_search

    opts = dataclasses.replace(_options(tmp_path, "tpe"), tpe_startup=3, tpe_multivariate=True)
    sampler = optuna_search(opts, tmp_path)._sampler
    assert sampler._n_startup_trials == 3 and sampler._multivariate and sampler._group
    default = optuna_search(_options(tmp_path / "d", "tpe"), tmp_path)._sampler
    assert default._n_startup_trials == 5 and not default._multivariate
    save_options(opts, tmp_path)
    saved = json.loads((tmp_path / OPTIONS_FILE).read_text())
    assert (saved["tpe_startup"], saved["tpe_multivariate"]) == (3, True)
    restored = restore_options(_options(tmp_path, "tpe"), tmp_path)
    assert (restored.tpe_startup, restored.tpe_multivariate) == (3, True)
    # A sweep saved before the options existed resumes with what it ran: Optuna's defaults.
    del saved["tpe_startup"], saved["tpe_multivariate"]
    (tmp_path / OPTIONS_FILE).write_text(json.dumps(saved))
    old = restore_options(_options(tmp_path, "tpe"), tmp_path)
    assert (old.tpe_startup, old.tpe_multivariate) == (10, False)


def test_options_saved_before_search_existed_restore_as_tpe(tmp_path):
    import json

    from sweeper.tune.driver import OPTIONS_FILE, restore_options, save_options

    save_options(_options(tmp_path, "random"), tmp_path)
    data = json.loads((tmp_path / OPTIONS_FILE).read_text())
    del data["search"]
    (tmp_path / OPTIONS_FILE).write_text(json.dumps(data))
    assert restore_options(_options(tmp_path, "random"), tmp_path).search == "tpe"


def test_rule_and_objective_survive_save_restore(tmp_path):
    import dataclasses

    from sweeper.tune.driver import restore_options, save_options
    from trainers.quality import SuccessRule

    rule = SuccessRule(min_hq_ratio=0.8, min_mode_share=0.1)
    opts = dataclasses.replace(_options(tmp_path, "tpe"), rule=rule, objective="fid")
    save_options(opts, tmp_path)
    restored = restore_options(_options(tmp_path, "tpe"), tmp_path)  # defaults: quality
    assert restored.rule == rule and restored.objective == "fid"


def test_options_saved_before_the_quality_rule_restore_as_they_ran(tmp_path):
    import json

    from sweeper.tune.driver import OPTIONS_FILE, restore_options, save_options
    from trainers.quality import LEGACY_RULE

    save_options(_options(tmp_path, "tpe"), tmp_path)
    data = json.loads((tmp_path / OPTIONS_FILE).read_text())
    del data["rule"], data["objective"]
    (tmp_path / OPTIONS_FILE).write_text(json.dumps(data))
    restored = restore_options(_options(tmp_path, "tpe"), tmp_path)
    assert restored.rule == LEGACY_RULE and restored.objective == "fid"


def test_random_search_sweep_end_to_end(tmp_path):
    """A real --search random sweep: its options say so, MLflow records it, and the Optuna
    study holds the settings RandomSampler(sampler_seed) draws. (TPE's first 10 suggestions
    are the same random draws, so the sampler's type is checked above, not here.)"""
    import json

    from sweeper.tune.driver import OPTIONS_FILE, sweep_path
    from sweeper.tune.spaces import load_space

    p = sweeper("run", "--smoke-test", "--search", "random", "--sampler-seed", "7",
                "--experiment", "rnd", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "random search" in p.stderr
    path = sweep_path(tmp_path / "sweeps", "rnd")
    assert json.loads((path / OPTIONS_FILE).read_text())["search"] == "random"
    study = optuna.load_study(study_name="rnd", storage=f"sqlite:///{path / 'optuna.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert len(trials) == 2
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
               for t in trials)
    space = load_space("default")
    fresh = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    for t in trials:
        ask = fresh.ask()
        space(ask)
        assert ask.params == t.params
    c = store.client(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.get_experiment_by_name("rnd")
    (parent,) = c.search_runs([exp.experiment_id],
                              filter_string=f"tags.`{tags.TAG_KIND}` = 'sweep'")
    assert parent.data.params["search"] == "random"
    assert parent.data.params["sampler_seed"] == "7"


# fuse 2 holds the shape fixed (one loss) so that settings pair up: trials of 2 settings.
@pytest.mark.parametrize("fuse", [1, 2])
def test_budget_steps_stops_the_sweep_when_its_compute_is_spent_and_resume_adds_nothing(
        tmp_path, fuse):
    """--budget-steps 200 with trials of 60 steps x 2 seeds: the first trial spends 120, the
    second is cut at step 40 (120 + 2 x 40 = 200), the other four never start. The sweep is
    finished, not incomplete, the cut trial reaches Optuna as pruned, and a resume (which
    restores the stopper) starts nothing. Fused two settings per trial, every count doubles:
    a budget of 400 stops the second trial, both its settings, at step 40."""
    from sweeper.tune.driver import sweep_path

    space = SPACE if fuse == 1 else {**SPACE, "fixed": {**SPACE["fixed"], "loss": "wgan-gp"},
                                     "params": {"lr_d": SPACE["params"]["lr_d"]}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    budget = 200 * fuse
    args = ["--space", "space.yaml", "--experiment", "bud", "--num-samples", "6", "--seeds",
            "2", "--max-concurrent", "1", "--no-early-stop", "--budget-steps", str(budget),
            "--sampler-seed", "3", "--fuse", str(fuse)]
    for extra in ([], ["--resume"]):
        p = sweeper("run", *args, *extra, cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-3000:]
        assert (f"compute budget of {budget} generator steps spent after {2 * fuse} of 6 "
                "trials") in p.stderr
        assert "finished at step 60" in p.stdout or extra  # the resume trains nothing
        assert p.stdout.count("| stopped@40 |") == fuse
    path = sweep_path(tmp_path / "sweeps", "bud")
    assert len(list(path.glob("run_trial_*"))) == 2
    study = optuna.load_study(study_name="bud", storage=f"sqlite:///{path / 'optuna.db'}")
    assert [t.state for t in sorted(study.trials, key=lambda t: t.number)] == [
        optuna.trial.TrialState.COMPLETE] * fuse + [optuna.trial.TrialState.PRUNED] * fuse
    c = store.client(f"sqlite:///{tmp_path}/mlflow.db")
    exp = c.get_experiment_by_name("bud")
    (parent,) = c.search_runs([exp.experiment_id],
                              filter_string=f"tags.`{tags.TAG_KIND}` = 'sweep'")
    assert parent.data.tags[tags.TAG_STATUS] == "finished"
    assert parent.data.params["budget_steps"] == str(budget)
    seed_runs = c.search_runs([exp.experiment_id],
                              filter_string=f"tags.`{tags.TAG_KIND}` = 'seed'")
    assert len(seed_runs) == 4 * fuse  # 2 trials x fuse settings x 2 seeds, none twice


def test_run_options_come_from_sweep_options_with_its_defaults_and_docs() -> None:
    """`sweeper run`'s options are generated from SweepOptions: one place for defaults."""
    import dataclasses

    from sweeper.cli.main import run
    from sweeper.tune.driver import CLI_FIELDS, SweepOptions

    params = {p.name: p for p in run.params}
    for f in CLI_FIELDS:
        assert params[f.name].default == f.default, f.name
        assert params[f.name].help == f.metadata["doc"], f.name
    assert params["grace_fraction"].opts == ["--grace"]
    assert params["batch_seeds"].secondary_opts == ["--separate-seeds"]
    fields = {f.name for f in dataclasses.fields(SweepOptions)}
    assert {f.name for f in CLI_FIELDS} <= fields


@pytest.mark.parametrize("multivariate", [False, True])
def test_tpe_after_its_startup_suggests_valid_settings_in_a_conditional_space(multivariate):
    from sweeper.tune.search import make_sampler
    from sweeper.tune.spaces import load_space
    from trainers.config import make_config

    space = load_space("default")  # gp_lambda only for wgan-gp, clip_value only for wgan-clip
    study = optuna.create_study(sampler=make_sampler("tpe", 0, startup=3,
                                                     multivariate=multivariate))
    for i in range(12):  # 9 suggestions from the model, on a made-up objective
        t = study.ask()
        fixed = space(t)
        make_config({**fixed, **t.params})
        study.tell(t, (t.params["lr_d"] - 3e-3) ** 2 + i * 1e-9)
    assert len(study.trials) == 12
