"""`sweeper train` and `sweeper eval` as a user runs them: real trainer, real MLflow (sqlite)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sweeper.cli import main
from sweeper.track.metric_keys import history
from trainers.config import make_config
from trainers.data import build_dataset

SWEEPER = str(Path(sys.executable).with_name("sweeper"))


def run_cli(args, capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_train_json_last_line_and_mlflow_run(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code, out, err = run_cli(["train", "--loss", "bce-ns", "--dataset", "grid25", "--json",
                              "--smoke-test", "--tracking-uri", uri, "--hidden", "16"], capsys)
    assert code == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["step"] == 40 and final["num_modes"] == 25 and final["diverged"] == 0
    assert final["seed_success"] in (0, 1) and 0 <= final["seed_score"] <= 1
    assert "modes_held" in final
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("gan-sweeper-train")
    (run,) = c.search_runs([exp.experiment_id])
    assert run.data.params["loss"] == "bce-ns" and run.data.params["hidden"] == "16"
    assert run.data.params["success.min_hq_ratio"] == "0.5"  # the rule it was judged by
    hist = history(c, run.info.run_id, "fid")
    assert [m.step for m in hist] == [20, 40]  # one value per evaluation, no duplicates
    assert [a.path for a in c.list_artifacts(run.info.run_id, "plots")] == [
        "plots/samples_step0000020.png", "plots/samples_step0000040.png"]
    assert run.info.status == "FINISHED"


def test_config_file_is_loaded_and_options_override_it(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"loss": "wgan-clip", "clip_value": 0.05, "hidden": 8,
                                   "steps": 10, "eval_every": 10}))
    out = tmp_path / "gen.npy"
    code, stdout, err = run_cli(["train", "--config", str(cfg), "--clip-value", "0.02",
                                 "--no-track", "--json", "--samples-out", str(out),
                                 "--eval-samples", "300"], capsys)
    assert code == 0, err
    assert np.load(out).shape == (300, 2)
    assert json.loads(stdout.splitlines()[-1])["step"] == 10


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path, capsys):
    common = ["train", "--no-track", "--json", "--hidden", "16", "--eval-every", "10",
              "--eval-samples", "200", "--seed", "3"]
    _, full, _ = run_cli([*common, "--steps", "30"], capsys)
    ck = str(tmp_path / "ck.pt")
    run_cli([*common, "--steps", "30", "--checkpoint", ck, "--smoke-test"], capsys)  # other cfg
    code, _, err = run_cli([*common, "--steps", "30", "--checkpoint", ck, "--resume"], capsys)
    assert code == 2 and "another config" in err
    ck2 = str(tmp_path / "ck2.pt")
    # An interrupted run: the trainer checkpoints at step 20 of 30, then the CLI resumes it.
    from trainers import Trainer

    t = Trainer(make_config({"hidden": 16, "eval_every": 10, "eval_samples": 200, "seed": 3,
                             "steps": 30}))
    t.train_until(20)
    t.evaluate()
    t.save(ck2)
    code, resumed, err = run_cli([*common, "--steps", "30", "--checkpoint", ck2, "--resume"],
                                 capsys)
    assert code == 0 and "resuming from step 20" in err
    a, b = json.loads(full.splitlines()[-1]), json.loads(resumed.splitlines()[-1])
    for key in ("fid", "modes_covered", "hq_fraction", "w_distance", "grad_norm"):
        assert a[key] == b[key], key


def test_train_seeds_is_one_population_with_a_run_per_seed(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["train", "--loss", "wgan-gp", "--hidden", "16", "--steps", "20",
              "--eval-every", "10", "--eval-samples", "300", "--seed", "5", "--json"]
    code, out, err = run_cli([*common, "--seeds", "3", "--tracking-uri", uri,
                              "--samples-out", str(tmp_path / "x.npy")], capsys)
    assert code == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert [m["seed"] for m in final["seeds"]] == [5, 6, 7]
    assert final["failed_seeds"] == sum(1 - m["seed_success"] for m in final["seeds"])
    assert final["train_seconds"] > 0 and "seed_score_median" in final
    # Seed 6 of the population is the single run with --seed 6 (within float round-off).
    _, one, _ = run_cli([*common[:-3], "--seed", "6", "--json", "--no-track"], capsys)
    alone = json.loads(one.strip().splitlines()[-1])
    for key in ("fid", "hq_fraction", "seed_score", "w_distance", "grad_norm"):
        assert final["seeds"][1][key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), key
    assert [np.load(tmp_path / f"x-seed{s}.npy").shape for s in (5, 6, 7)] == [(300, 2)] * 3
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    runs = c.search_runs([c.get_experiment_by_name("gan-sweeper-train").experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["5", "6", "7"]
    for r in runs:  # per-seed runs as before: curves without duplicates, plots, status
        assert [m.step for m in history(c, r.info.run_id, "fid")] == [10, 20]
        assert len(c.list_artifacts(r.info.run_id, "plots")) == 2
        assert r.info.status == "FINISHED"


def test_train_seeds_resumes_the_whole_population(tmp_path, capsys):
    from trainers.members import make_members, save_members_file

    common = ["train", "--no-track", "--json", "--hidden", "16", "--eval-every", "10",
              "--eval-samples", "200", "--seed", "3", "--steps", "30", "--seeds", "2"]
    _, full, _ = run_cli(common, capsys)
    members = make_members([make_config({"hidden": 16, "eval_every": 10, "eval_samples": 200,
                                         "seed": s, "steps": 30}) for s in (3, 4)])
    members.train_until(20)
    members.evaluate()
    save_members_file(members, tmp_path / "ck.pt")
    code, resumed, err = run_cli([*common, "--checkpoint", str(tmp_path / "ck.pt"),
                                  "--resume"], capsys)
    assert code == 0 and "resuming from step 20" in err
    a, b = json.loads(full.splitlines()[-1]), json.loads(resumed.splitlines()[-1])
    for sa, sb in zip(a["seeds"], b["seeds"], strict=True):
        for key in ("fid", "hq_fraction", "w_distance", "grad_norm"):
            assert sa[key] == sb[key], key
    code, _, err = run_cli([*common[:-1], "3", "--checkpoint", str(tmp_path / "ck.pt"),
                            "--resume"], capsys)
    assert code == 2 and "another config" in err and "\n" not in err.strip()
    code, _, err = run_cli([*common[:-1], "0"], capsys)
    assert code == 2 and "--seeds must be between 1 and 1000" in err


def test_eval_true_samples_give_all_modes(tmp_path, capsys):
    data = build_dataset(make_config({"dataset": "ring8", "eval_samples": 2}), torch.device("cpu"))
    x = data.sample(2500, torch.Generator().manual_seed(9)).numpy()
    np.save(tmp_path / "real.npy", x)
    code, out, err = run_cli(["eval", "--dataset", "ring8", "--samples",
                              str(tmp_path / "real.npy"), "--json"], capsys)
    assert code == 0, err
    m = json.loads(out)
    assert m["modes_covered"] == 8 and m["mode_kl"] < 0.01 and m["fid_n"] == 2500
    assert m["fid"] < 1e-3
    assert m["seed_success"] == 1 and m["modes_held"] == 8 and m["seed_score"] < 0.05


def test_eval_judges_quality_and_takes_rule_overrides(tmp_path, capsys):
    theta = np.random.default_rng(0).uniform(0, 2 * np.pi, 2500)
    np.save(tmp_path / "ring.npy", np.stack([np.cos(theta), np.sin(theta)], 1))
    args = ["eval", "--dataset", "ring8", "--samples", str(tmp_path / "ring.npy"), "--json"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    m = json.loads(out)  # a uniform circle: every mode "covered", no mode learned
    assert m["modes_covered"] == 8 and m["seed_success"] == 0 and m["seed_score"] > 0.85
    # With the legacy rule (coverage alone) the same samples pass: the override reaches eval.
    code, out, err = run_cli([*args, "--min-hq-ratio", "0", "--min-mode-share", "0"], capsys)
    assert code == 0 and json.loads(out)["seed_success"] == 1
    code, _, err = run_cli([*args, "--min-coverage", "2"], capsys)
    assert code == 2 and "min_coverage must be a number in [0, 1]" in err
    assert err.count("\n") == 1

def _bad_files(tmp_path):
    good = np.zeros((100, 2), np.float32)
    np.save(tmp_path / "g.npy", good)
    raw = (tmp_path / "g.npy").read_bytes()
    (tmp_path / "truncated.npy").write_bytes(raw[: len(raw) // 2])
    np.save(tmp_path / "shape.npy", np.zeros((100, 3), np.float32))
    np.save(tmp_path / "dtype.npy", np.array([["a", "b"]] * 10))
    nan = good.copy()
    nan[5, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "text.npy").write_text("not numpy")
    return {"truncated.npy": "it is cut off or damaged", "shape.npy": "needs N x 2",
            "dtype.npy": "must hold numbers", "nan.npy": "1 samples with NaN",
            "text.npy": "not a readable .npy", "missing.npy": "does not exist"}


def test_eval_bad_files_get_one_line_and_exit_2(tmp_path, capsys):
    for name, needle in _bad_files(tmp_path).items():
        code, out, err = run_cli(["eval", "--dataset", "ring8", "--samples",
                                  str(tmp_path / name)], capsys)
        assert code == 2, name
        assert needle in err, (name, err)
        assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("args, needle", [
    (["train", "--gp-lambda", "-1"], "gp_lambda must be a number in [0"),
    (["train", "--n-critic", "0"], "n_critic must be an integer in [1"),
    (["train", "--lr-d", "0"], "lr_d must be a number in (0"),
    (["train", "--clip-value", "0"], "clip_value must be"),
    (["train", "--dataset", "mnist8"], "unknown dataset 'mnist8'"),
    (["train", "--loss", "hinge"], "loss must be one of"),
    (["train", "--lr-g", "nan"], "lr_g must be a finite number"),
    (["train", "--config", "/nonexistent.yaml"], "cannot read config file"),
    (["train", "--tracking-uri", "http://127.0.0.1:9"], "cannot reach the MLflow tracking"),
    (["train", "--tracking-uri", "sqlite:////nonexistent/dir/m.db"], "does not exist"),
    (["eval", "--dataset", "nope", "--samples", "x.npy"], "unknown dataset 'nope'"),
])
def test_bad_input_one_line_exit_2(args, needle, capsys):
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert needle in err, err
    assert "Traceback" not in err and err.strip().count("\n") <= 2  # click usage adds a hint


def test_console_script_diverging_run_exits_0_and_reports_it():
    # An unconstrained (lambda = 0) deep critic at lr 1 overflows to inf/NaN within 25 steps
    # for seed 0; the run must end early, exit 0 and report diverged = 1 with no NaN.
    p = subprocess.run([SWEEPER, "train", "--loss", "wgan-gp", "--gp-lambda", "0", "--lr-d",
                        "1", "--lr-g", "1", "--depth", "8", "--hidden", "32", "--seed", "0",
                        "--steps", "300", "--eval-every", "50", "--no-track", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "nan" not in p.stdout.lower()
    final = json.loads(p.stdout.strip().splitlines()[-1])
    assert final["diverged"] == 1 and final["step"] < 300
    assert final["modes_covered"] == 0 and "fid" not in final and "DIVERGED" in p.stderr
    assert final["seed_success"] == 0 and final["seed_score"] == 1


def test_eval_accepts_image_arrays(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAN_SWEEPER_CACHE", str(tmp_path / "cache"))  # classifier cache
    data = build_dataset(make_config({"dataset": "digits", "eval_samples": 2}),
                         torch.device("cpu"))
    x = data.sample(1000, torch.Generator().manual_seed(0)).numpy()
    assert x.shape == (1000, 1, 8, 8)
    np.save(tmp_path / "digits.npy", x)
    code, out, err = run_cli(["eval", "--dataset", "digits", "--samples",
                              str(tmp_path / "digits.npy"), "--json"], capsys)
    assert code == 0, err
    m = json.loads(out)
    assert m["modes_covered"] == 10 and m["fid_n"] == 1000 and "kid" in m
    assert m["seed_success"] == 1 and m["seed_score"] < 0.1
    np.save(tmp_path / "flat.npy", x.reshape(1000, 64))
    code, _, err = run_cli(["eval", "--dataset", "digits", "--samples",
                            str(tmp_path / "flat.npy")], capsys)
    assert code == 2 and "needs N x 1 x 8 x 8" in err


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("args", "says"), [
    (["--device", "cuda"], "is not available here"),
    (["--device", "cuda:7"], "is not available here"),
    (["--experiment", ""], "--experiment must not be empty"),
    (["--experiment", "x" * 600], "MLflow takes at most 500"),
    (["--tracking-uri", "sqlite:///"], "in-memory database"),
    (["--tracking-uri", "sqlite:///:memory:"], "in-memory database"),
    (["--tracking-uri", "foo://bar"], "unknown scheme 'foo'"),
    (["--samples-out", "/proc/x.npy", "--no-track"], "--samples-out /proc/x.npy cannot be "),
    (["--checkpoint", "/proc/x.pt", "--no-track"], "--checkpoint /proc/x.pt cannot be "),
    (["--samples-out", "/tmp", "--no-track"], "is a directory"),
    (["--steps", "ten"], "is not a valid integer"),
    (["--seeds", "1001"], "--seeds must be between 1 and 1000"),
    (["--checkpoint", "x" * 5000, "--no-track"], "cannot be written (File name too long)"),
    (["--tracking-uri", "sqlite:////tmp"], "names a folder"),
])
def test_train_refuses_bad_input_in_one_line_before_training(args, says, capsys, tmp_path):
    code, out, err = run_cli(["train", "--smoke-test", "--tracking-uri",
                              f"sqlite:///{tmp_path}/m.db", *args], capsys)
    assert code == 2, err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1, err
    assert len(err) < 400 and "step" not in out  # no training happened
    assert not (tmp_path / "m.db").exists() or "--tracking-uri" in args


def test_config_file_that_is_binary_or_a_directory_is_one_line(tmp_path, capsys):
    binary = tmp_path / "c.yaml"
    binary.write_bytes(bytes(range(256)))
    for path, says in ((binary, "is not text"), (tmp_path, "is a directory")):
        code, _, err = run_cli(["train", "--config", str(path), "--no-track"], capsys)
        assert code == 2 and says in err and err.count("\n") == 1, err


def test_eval_refuses_npz_and_values_beyond_float32(tmp_path, capsys):
    np.savez(tmp_path / "s.npz", x=np.zeros((10, 2)))
    np.save(tmp_path / "big.npy", np.full((10, 2), 1e300))
    for name, says in (("s.npz", "is an .npz archive"), ("big.npy", "beyond float32's range")):
        code, _, err = run_cli(["eval", "--dataset", "ring8", "--samples",
                                str(tmp_path / name)], capsys)
        assert code == 2 and says in err and err.count("\n") == 1, err


@pytest.mark.parametrize("flag", ["--cpus-per-trial", "--gpus-per-trial"])
def test_run_refuses_nan_resources_before_ray_starts(flag, capsys):
    code, _, err = run_cli(["run", "--smoke-test", flag, "nan"], capsys)
    assert code == 2 and "must be finite numbers" in err, err


def test_many_seeds_get_a_note_before_training(capsys):
    code, out, err = run_cli(["train", "--smoke-test", "--no-track", "--seeds", "33",
                              "--hidden", "8", "--depth", "1", "--json"], capsys)
    assert code == 0, err
    assert "note: --seeds 33: each setting trains 33 runs" in err
    assert len(json.loads(out.strip().splitlines()[-1])["seeds"]) == 33


def test_a_checkpoint_that_is_not_one_is_named(tmp_path, capsys):
    bad = tmp_path / "c.pt"
    bad.write_text("- 1\n- 2\n")
    code, _, err = run_cli(["train", "--smoke-test", "--no-track", "--checkpoint", str(bad),
                            "--resume"], capsys)
    assert code == 2 and "is not a gan-sweeper checkpoint" in err and err.count("\n") == 1
