"""`sweeper stable / compare / report` on a real sweep (real Ray, Optuna and MLflow on sqlite).

ONE small sweep (4 WGAN-GP settings x 3 seeds, 40 steps, no early stopping so every setting
reaches full budget) is shared by the tests. `compare` needs more experiments: they are copies
of that sweep's runs in the same MLflow store (one with the same protocol, one measured on
another number of samples), which costs a second where another Ray sweep would cost a minute.
The confirm test adds runs to the sweep, so it comes after the tests that read the sweep as-is.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import yaml
from mlflow.entities import Metric, Param

from sweeper.cli import main
from sweeper.track import store, tags
from sweeper.track.metric_keys import metrics_of, plain
from sweeper.track.tags import KIND_CONFIRM, TAG_CONFIRM_OF
from trainers import names
from trainers.config import load_config_file, make_config
from trainers.data import REAL_HQ_2D

pytestmark = pytest.mark.slow

SWEEPER = str(Path(sys.executable).with_name("sweeper"))
FIXED = {"dataset": "ring8", "steps": 40, "eval_every": 20, "eval_samples": 300, "hidden": 16,
         "depth": 2, "batch_size": 64, "loss": "wgan-gp"}
SPACE = {"description": "tiny GP space for analysis tests", "fixed": FIXED,
         "params": {"gp_lambda": {"log_uniform": [0.1, 100]}, "n_critic": {"int": [1, 3]},
                    "lr_d": {"log_uniform": [1e-4, 1e-2]}}}
MAIN = "it's a \"gp\" sweep"
NUM, SEEDS = 4, 3


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    p = subprocess.run(
        [SWEEPER, "run", "--space", "space.yaml", "--experiment", MAIN, "--num-samples",
         str(NUM), "--seeds", str(SEEDS), "--max-concurrent", "2", "--no-early-stop",
         "--sampler-seed", "0"], cwd=root, capture_output=True, text=True, timeout=900,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert p.returncode == 0, p.stderr[-3000:]
    uri = f"sqlite:///{root}/mlflow.db"
    client = store.client(uri)
    copy_experiment(client, MAIN, "copy 'same'", {})
    copy_experiment(client, MAIN, "copy-500", {"eval_samples": "500"})
    # A sweep as gan-sweeper logged it before the quality rule: no rule or objective on the
    # sweep run, no quality metrics on the seeds.
    # Its metric keys are plain too: the "quality/..." prefixes came later (issue 38).
    copy_experiment(client, MAIN, "legacy", {}, drop=("success.", "objective", "seed_",
                                                      "modes_held"), plain_keys=True)
    return {"root": root, "uri": uri}


def copy_experiment(client, src: str, dst: str, param_changes: dict[str, str],
                    drop: tuple[str, ...] = (), *, plain_keys: bool = False) -> None:
    """Copy a sweep's sweep/trial/seed runs (params, tags, final metrics, nesting) into a new
    experiment, changing the given params wherever a run has them and leaving out params and
    metrics whose (plain) names start with a prefix in `drop`; `plain_keys` logs the metrics
    under their plain names, as sweeps did before the prefixes."""
    runs = client.search_runs([client.get_experiment_by_name(src).experiment_id],
                              max_results=1000)
    exp_id = client.create_experiment(dst)
    new_id: dict[str, str] = {}
    for kind in ("sweep", "trial", "seed"):  # parents before children
        for r in (r for r in runs if r.data.tags.get(tags.TAG_KIND) == kind):
            copied = {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")}
            if tags.PARENT_TAG in r.data.tags:
                copied[tags.PARENT_TAG] = new_id[r.data.tags[tags.PARENT_TAG]]
            run = client.create_run(exp_id, run_name=r.info.run_name, tags=copied)
            step = int(metrics_of(r).get(names.STEP, 0))
            client.log_batch(run.info.run_id,
                             metrics=[Metric(plain(k) if plain_keys else k, v, 0, step)
                                      for k, v in r.data.metrics.items()
                                      if not plain(k).startswith(drop)],
                             params=[Param(k, param_changes.get(k, v))
                                     for k, v in r.data.params.items()
                                     if not k.startswith(drop)])
            new_id[r.info.run_id] = run.info.run_id


def cli(args, capsys, cwd):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with pytest.raises(SystemExit) as e:
            main(args)
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def stable_json(sweeps, capsys, *extra):
    code, out, err = cli(["stable", "--experiment", MAIN, "--tracking-uri", sweeps["uri"],
                          "--json", *extra], capsys, sweeps["root"])
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def runs_by_kind(sweeps, name=MAIN):
    c = store.client(sweeps["uri"])
    exp = c.get_experiment_by_name(name)
    out = {}
    for r in c.search_runs([exp.experiment_id], max_results=1000):
        out.setdefault(r.data.tags.get(tags.TAG_KIND), []).append(r)
    return c, out


def test_table_numbers_match_a_direct_computation_from_mlflow(sweeps, capsys):
    data = stable_json(sweeps, capsys)
    rows = data["ranked"] + data["flagged"]
    assert len(rows) == NUM and len(data["ranked"]) == NUM  # full budget, 3 seeds: all ranked
    _, kinds = runs_by_kind(sweeps)
    for trial in kinds["trial"]:
        seeds = [s for s in kinds["seed"]
                 if s.data.tags[tags.PARENT_TAG] == trial.info.run_id]
        assert len(seeds) == SEEDS
        ok = 0
        fids, scores = [], []
        for s in seeds:
            m = metrics_of(s)
            # The default rule, recomputed from the seed's logged numbers.
            failed = m.get(names.DIVERGED, 0) >= 1 or m[names.MODES_HELD] < (
                0.9 * m[names.NUM_MODES]) or m[names.HQ_FRACTION] < 0.5 * REAL_HQ_2D
            assert m[names.SEED_SUCCESS] == (not failed)
            ok += not failed
            fids.append(m[names.FID] if not m.get(names.DIVERGED) else math.inf)
            scores.append(m[names.SEED_SCORE])
            assert m[names.STEP] == FIXED["steps"]
        (row,) = [r for r in rows if r["key"] == trial.info.run_id]
        assert row["successes"] == ok and row["n_seeds"] == SEEDS
        assert row["fid_median"] == pytest.approx(statistics.median(fids))
        assert row["fid_range"] == pytest.approx([min(fids), max(fids)])
        assert row["modes_covered_mean"] == pytest.approx(statistics.mean(
            metrics_of(s)[names.MODES_COVERED] for s in seeds))
        assert row["score_median"] == pytest.approx(statistics.median(scores))
        assert row["hq_fraction_mean"] == pytest.approx(statistics.mean(
            metrics_of(s)[names.HQ_FRACTION] for s in seeds))
        lo, hi = row["fid_ci"]
        assert min(fids) <= lo <= row["fid_median"] <= hi <= max(fids)
        assert row["params"]["gp_lambda"] == float(trial.data.params["gp_lambda"])
    keys = [(-r["success_wilson"][0], r["score_median"]) for r in data["ranked"]]
    assert keys == sorted(keys)
    assert data["params"] == ["gp_lambda", "n_critic", "lr_d"]  # the sampled ones only
    assert data["objective"] == data["sweep_objective"] == "quality"
    assert data["rule"] == {"min_coverage": 0.9, "min_mode_share": 0.25, "min_hq_ratio": 0.5,
                            "min_coverage_ratio": 0.7, "min_precision_ratio": 0.5}
    # The parent run records the rule and the objective the sweep ran with.
    (parent,) = kinds["sweep"]
    assert parent.data.params["objective"] == "quality"
    assert parent.data.params["success.min_hq_ratio"] == "0.5"


def test_objective_fid_re_ranks_without_retraining(sweeps, capsys):
    quality = stable_json(sweeps, capsys)
    fid = stable_json(sweeps, capsys, "--objective", "fid")
    assert fid["objective"] == "fid" and fid["sweep_objective"] == "quality"
    assert any("Re-ranked with --objective fid" in line for line in fid["preamble"])
    keys = [(-r["success_wilson"][0], r["fid_median"] if r["fid_median"] is not None
             else math.inf) for r in fid["ranked"]]
    assert keys == sorted(keys)
    # The same settings and numbers, in the other order.
    by_key = {r["key"]: r for r in quality["ranked"]}
    assert sorted(by_key) == sorted(r["key"] for r in fid["ranked"])
    for r in fid["ranked"]:
        assert r["successes"] == by_key[r["key"]]["successes"]
    _, kinds = runs_by_kind(sweeps)
    assert len(kinds["trial"]) == NUM  # nothing was trained
    assert "--objective must be one of" in bad(
        sweeps, capsys, ["stable", "--experiment", MAIN, "--tracking-uri", sweeps["uri"],
                         "--objective", "hq"])


def test_sweeps_logged_before_the_quality_rule_still_load_and_say_so(sweeps, capsys):
    code, out, err = cli(["stable", "--experiment", "legacy", "--tracking-uri", sweeps["uri"],
                          "--json"], capsys, sweeps["root"])
    assert code == 0, err
    data = json.loads(out.strip().splitlines()[-1])
    # Such a sweep ran with coverage alone and FID as the tie-breaker: that is what it says.
    assert data["sweep_objective"] == "fid" and data["rule"]["min_hq_ratio"] == 0.0
    assert any(f"{NUM * SEEDS} seed(s) carry no seed_success" in line
               for line in data["preamble"])
    assert all(r["successes"] == 0 for r in data["ranked"] + data["flagged"])


def test_text_table_and_regions(sweeps, capsys):
    code, out, err = cli(["stable", "--experiment", MAIN, "--tracking-uri", sweeps["uri"]],
                         capsys, sweeps["root"])
    assert code == 0, err
    assert "ranked by success-rate Wilson 95% lower bound desc, then median seed_score" in out
    assert "A seed succeeds with >= 90% of the modes held" in out
    # The default table fits a 160-column terminal; --wide has every column.
    assert "| success | Wilson 95% | HQ | score | FID | modes held |" in out
    table = [ln for ln in out.splitlines() if ln.startswith("| ")]
    assert table and max(len(ln) for ln in table) <= 160
    first = [ln for ln in table if ln.startswith("| 1 |")]
    assert first and f"/{SEEDS} |" in first[0]
    # Region tables per loss: a cell never pools seeds of different losses.
    assert "Stable region gp_lambda x n_critic, loss wgan-gp" in out
    code, wide, err = cli(["stable", "--experiment", MAIN, "--tracking-uri", sweeps["uri"],
                           "--wide"], capsys, sweeps["root"])
    assert code == 0, err
    assert "| HQ mean | median score [95% CI] |" in wide


def test_export_round_trips_into_sweeper_train(sweeps, capsys, tmp_path):
    best = stable_json(sweeps, capsys)["ranked"][0]
    path = tmp_path / "best.yaml"
    code, out, err = cli(["stable", "--experiment", MAIN, "--tracking-uri", sweeps["uri"],
                          "--export", str(path)], capsys, sweeps["root"])
    assert code == 0, err
    values = load_config_file(path)
    assert "seed" not in values and "device" not in values
    # The header says what the file is worth: its rule, its budget, and that the success was
    # measured on the sweep's own seeds only (issue 38, item 7).
    header = [x for x in path.read_text().splitlines() if x.startswith("#")]
    assert header[1] == "# rule: >= 90% of the modes held (>= 0.25 of a mode's expected HQ " \
                        "share), HQ >= 0.5 x the real data's", header
    assert header[2] == f"# budget: {values['steps']} generator steps, batch " \
                        f"{values['batch_size']}", header
    assert "on the sweep's own seeds, not confirmed (`sweeper stable --confirm 10`)" \
        in header[3], header
    _, kinds = runs_by_kind(sweeps)
    (trial,) = [t for t in kinds["trial"] if t.info.run_id == best["key"]]
    want = make_config({k: v for k, v in trial.data.params.items() if k != "seeds"},
                       fill_loss_defaults=False)
    got = make_config(values, fill_loss_defaults=False)
    assert got == want.replace(seed=0, device="auto")
    # `sweeper train` uses every CPU it may; on a shared, loaded machine two torch threads
    # spin-wait for many times the work, so the round trip runs pinned to one CPU.
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        code, out, err = cli(["train", "--config", str(path), "--smoke-test", "--no-track",
                              "--json"], capsys, tmp_path)
    finally:
        os.sched_setaffinity(0, cpus)
    assert code == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["step"] == 40 and final["num_modes"] == 8


def test_report_writes_valid_pngs_and_logs_them_to_the_parent_run(sweeps, capsys):
    out_dir = sweeps["root"] / "report"
    code, out, err = cli(["report", "--experiment", MAIN, "--tracking-uri", sweeps["uri"],
                          "--out", str(out_dir)], capsys, sweeps["root"])
    assert code == 0, err
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert {"heatmap_gp_lambda_x_n_critic_wgan-gp.png", "coverage_vs_step.png",
            "samples.png", "grad_norm_by_loss.png", "optuna_importances.png",
            "optuna_parallel.png"} <= set(pngs), out
    assert [p for p in pngs if p.startswith("heatmap_lr_d_x_n_critic_")], pngs  # per loss
    for name in pngs:
        img = plt.imread(out_dir / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img.std() > 0.01  # not a blank canvas
    summary = (out_dir / "summary.md").read_text()
    assert "## Ranked settings" in summary and "Wilson lower bound" in summary
    for name in pngs:
        assert f"]({name})" in summary
    assert "lr_g x n_critic skipped" in summary and "one loss (wgan-gp)" in summary
    c, kinds = runs_by_kind(sweeps)
    (parent,) = kinds["sweep"]
    logged = {a.path for a in c.list_artifacts(parent.info.run_id, "report")}
    assert {f"report/{n}" for n in [*pngs, "summary.md"]} <= logged


def test_report_without_the_optuna_study_says_so(sweeps, capsys, tmp_path):
    code, out, err = cli(["report", "--experiment", MAIN, "--tracking-uri", sweeps["uri"],
                          "--out", str(tmp_path / "r"), "--sweep-dir", str(tmp_path)],
                         capsys, sweeps["root"])
    assert code == 0, err
    assert "No Optuna study at" in out and not list((tmp_path / "r").glob("optuna_*.png"))


def test_compare_same_protocol_table_and_figure(sweeps, capsys):
    out_dir = sweeps["root"] / "cmp"
    args = ["compare", "--experiment", MAIN, "--experiment", "copy 'same'", "--tracking-uri",
            sweeps["uri"], "--out", str(out_dir)]
    code, out, err = cli(args, capsys, sweeps["root"])
    assert code == 0, err
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and "wgan-gp" in ln]
    assert len(rows) == 2 and rows[0].startswith(f"| {MAIN} |")
    assert rows[1].startswith("| copy 'same' |")
    assert rows[0].split("|")[2:] == rows[1].split("|")[2:]  # a copy: the same numbers
    img = plt.imread(out_dir / "compare.png")
    assert img.shape[0] > 100 and img.std() > 0.01
    code, out, err = cli([*args, "--json"], capsys, sweeps["root"])
    data = json.loads(out.strip().splitlines()[-1])
    assert set(data["best"]) == {MAIN, "copy 'same'"}
    assert data["protocol"] == {"dataset": "ring8", "dataset_scale": 1.0, "eval_samples": 300,
                                "steps": 40}


def bad(sweeps, capsys, args):
    code, out, err = cli(args, capsys, sweeps["root"])
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_compare_refuses_different_protocols(sweeps, capsys):
    line = bad(sweeps, capsys, ["compare", "--experiment", MAIN, "--experiment", "copy-500",
                                "--tracking-uri", sweeps["uri"]])
    assert "protocols differ in eval_samples (300 vs 500)" in line


def test_bad_input_one_line_exit_2(sweeps, capsys, tmp_path):
    uri = sweeps["uri"]
    assert "no MLflow experiment named 'nope'" in bad(
        sweeps, capsys, ["stable", "--experiment", "nope", "--tracking-uri", uri])
    store.client(uri).create_experiment("empty 'one'")
    assert "has no finished trials" in bad(
        sweeps, capsys, ["report", "--experiment", "empty 'one'", "--tracking-uri", uri])
    assert "cannot reach the MLflow tracking server" in bad(
        sweeps, capsys, ["stable", "--experiment", MAIN, "--tracking-uri",
                         "http://127.0.0.1:9"])
    missing = f"sqlite:///{tmp_path}/none.db"
    assert "does not exist" in bad(sweeps, capsys, ["stable", "--experiment", MAIN,
                                                    "--tracking-uri", missing])
    assert not (tmp_path / "none.db").exists()
    assert "at least two different" in bad(
        sweeps, capsys, ["compare", "--experiment", MAIN, "--experiment", MAIN,
                         "--tracking-uri", uri])
    assert "qualifies for ranking" in bad(
        sweeps, capsys, ["stable", "--experiment", MAIN, "--tracking-uri", uri,
                         "--min-seeds", "4", "--export", str(tmp_path / "x.yaml")])


def test_confirm_replaces_estimates_with_fresh_seeds(sweeps, capsys):
    code, out, err = cli(["stable", "--experiment", MAIN, "--tracking-uri", sweeps["uri"],
                          "--confirm", "2", "--top", "2", "--smoke-test"], capsys,
                         sweeps["root"])
    assert code == 0, err
    assert "replace no estimate" in out and "| confirm |" not in out
    data = stable_json(sweeps, capsys, "--confirm", "3", "--top", "2")
    assert "Confirmed: 2 setting(s)" in data["note"]
    confirmed = [r for r in data["ranked"] + data["flagged"] if r["source"] == "confirm"]
    assert len(confirmed) == 2
    c, kinds = runs_by_kind(sweeps)
    (parent,) = kinds["sweep"]
    runs = kinds[KIND_CONFIRM]
    smoke = [r for r in runs if r.data.tags["gan_sweeper.smoke"] == "1"]
    real = [r for r in runs if r.data.tags["gan_sweeper.smoke"] == "0"]
    assert len(smoke) == 2 and len(real) == 6
    sweep_seeds = set(range(SEEDS))
    for row in confirmed:
        mine = [r for r in real if r.data.tags[TAG_CONFIRM_OF] == row["key"]]
        seeds = sorted(int(r.data.tags[tags.TAG_SEED]) for r in mine)
        assert row["seed_ids"] == seeds and row["n_seeds"] == 3
        assert not set(seeds) & sweep_seeds  # fresh: never used by the sweep
        assert not set(seeds) & {int(r.data.tags[tags.TAG_SEED]) for r in smoke}
        fids = [metrics_of(r)[names.FID] for r in mine]
        assert row["fid_median"] == pytest.approx(statistics.median(fids))
        # Judged by the sweep's rule, with the same quality metrics as the sweep's seeds.
        assert row["successes"] == sum(metrics_of(r)[names.SEED_SUCCESS] for r in mine)
        assert row["score_median"] == pytest.approx(statistics.median(
            metrics_of(r)[names.SEED_SCORE] for r in mine))
        for r in mine:
            assert r.data.tags[tags.PARENT_TAG] == parent.info.run_id
            assert r.data.params["steps"] == str(FIXED["steps"])
            assert r.data.tags[tags.TAG_STATUS] in ("finished", "diverged")
