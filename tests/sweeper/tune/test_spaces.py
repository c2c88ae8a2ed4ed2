"""Search spaces: every shipped file is valid, conditionals work, bad files get one line."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from sweeper.errors import UserError
from sweeper.tune.spaces import load_space, parse_space, shipped_spaces
from trainers.config import FIELDS, make_config

optuna.logging.set_verbosity(optuna.logging.WARNING)

REQUIRED = {"default", "wgan-gp", "wgan-clip", "bce", "compare"}


def test_required_spaces_are_shipped():
    assert REQUIRED <= set(shipped_spaces())


@pytest.mark.parametrize("name", shipped_spaces())
def test_every_shipped_space_makes_valid_configs(name):
    space = load_space(name)
    assert all(k in FIELDS for k in space.fixed)
    assert all(p.name in FIELDS for p in space.params)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        fixed = space(trial)
        cfg = make_config({**fixed, **trial.params})  # raises if any sampled value is invalid
        assert cfg.dataset == fixed.get("dataset", cfg.dataset)
        study.tell(trial, 0.0)


def test_conditional_parameters_only_with_their_loss():
    space = load_space("compare")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(60):
        t = study.ask()
        space(t)
        loss = t.params["loss"]
        seen.add(loss)
        assert ("gp_lambda" in t.params) == (loss == "wgan-gp")
        assert ("clip_value" in t.params) == (loss == "wgan-clip")
        study.tell(t, 0.0)
    assert seen == {"bce", "bce-ns", "wgan-clip", "wgan-gp"}


def test_penalty_weight_only_with_a_penalty():
    space = load_space("penalties")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    seen = set()
    for _ in range(40):
        t = study.ask()
        fixed = space(t)
        seen.add((t.params["loss"], t.params["penalty"]))
        assert "penalty_weight" in t.params and "gp_lambda" not in t.params
        make_config({**fixed, **t.params})
        study.tell(t, 0.0)
    assert seen == {(loss, p) for loss in ("wgan", "bce-ns") for p in ("gp", "lp", "r1")}
    space = parse_space({"fixed": {"loss": "bce-ns"},
                         "params": {"penalty": {"choice": ["none", "lp"]},
                                    "penalty_weight": {"uniform": [0.1, 1],
                                                       "when": {"penalty": "lp"}}}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        t = study.ask()
        space(t)
        assert ("penalty_weight" in t.params) == (t.params["penalty"] == "lp")
        study.tell(t, 0.0)


BASE = {"fixed": {"dataset": "ring8"}, "params": {"gp_lambda": {"log_uniform": [0.1, 10]}}}


@pytest.mark.parametrize("doc, needle", [
    ({**BASE, "extra": 1}, "unknown top-level key 'extra'"),
    ({"fixed": {"lamda": 1}, "params": BASE["params"]}, "unknown key 'lamda'"),
    ({"params": {"n_critc": {"int": [1, 5]}}}, "unknown key 'n_critc'"),
    ({"params": {"gp_lambda": {"log_uniform": [0, 10]}}}, "needs low > 0"),
    ({"params": {"gp_lambda": {"uniform": [-1, 10]}}}, "gp_lambda must be"),
    ({"params": {"n_critic": {"int": [0, 5]}}}, "n_critic must be"),
    ({"params": {"loss": {"choice": []}}}, "non-empty list"),
    ({"params": {"loss": {"choice": ["bce", "hinge"]}}}, "loss must be one of"),
    ({"params": {"lr_d": {"uniform": [1e-3, 1e-4]}}}, "low < high"),
    ({"params": {"lr_d": {"int": [1, 2]}}}, "does not fit"),
    ({"params": {"gp_lambda": {"log_uniform": [0.1, 1], "when": {"loss": "wgan-gp"}}}},
     "earlier choice parameter"),
    ({"params": {"loss": {"choice": ["bce", "wgan-gp"]},
                 "gp_lambda": {"log_uniform": [0.1, 1], "when": {"loss": "wgan-clip"}}}},
     "is not a choice of 'loss'"),
    ({"params": {"loss": {"choice": ["wgan", "wgan-gp"]}, "penalty": {"choice": ["lp"]}}},
     "the choices loss=wgan-gp, penalty=lp: loss wgan-gp has its gradient penalty built in"),
    ({"params": {}}, "'params' is empty"),
    ({"fixed": {"steps": 10}, "params": {"steps": {"int": [1, 5]}}}, "both fixed and sampled"),
    ({"params": {"seed": {"int": [0, 5]}}}, "cannot be sampled"),
    ([1, 2], "must be a mapping"),
    ({**BASE, "success": {"min_hq": 0.5}}, "unknown key 'min_hq' in 'success'"),
    ({**BASE, "success": {"min_hq_ratio": 2}}, "min_hq_ratio must be a number in [0, 1]"),
    ({**BASE, "success": [0.5]}, "'success' must be a mapping"),
])
def test_bad_spaces_get_one_clear_line(doc, needle):
    with pytest.raises(UserError) as e:
        parse_space(doc)
    msg = str(e.value)
    assert needle in msg
    assert "\n" not in msg


def test_bad_file_error_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"params": {"gp_lamda": {"log_uniform": [0.1, 1]}}}))
    with pytest.raises(UserError, match=r"search space .*bad.yaml: unknown key 'gp_lamda'"):
        load_space(str(p))
    p.write_text("params: {gp_lambda: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_space(str(p))


def test_unknown_space_name_lists_shipped_ones():
    with pytest.raises(UserError, match="unknown search space 'nope'; shipped spaces: .*default"):
        load_space("nope")


def test_success_block_overrides_the_rule():
    space = parse_space({**BASE, "success": {"min_hq_ratio": 0.7, "min_coverage": 1}})
    assert space.success == {"min_hq_ratio": 0.7, "min_coverage": 1.0}
    assert parse_space(BASE).success == {}


def test_space_files_read_1e_minus_4_and_a_directory_is_named_as_one(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("fixed: {dataset: ring8, loss: wgan-gp}\n"
                 "params:\n  lr_d: {log_uniform: [1e-5, 1e-2]}\n")
    (p,) = load_space(str(f)).params
    assert p.name == "lr_d"
    folder = tmp_path / "d.yaml"
    folder.mkdir()
    with pytest.raises(UserError, match="is a directory"):
        load_space(str(folder))
    f.write_text("fixed: {dataset: ring8}\nfixed: {dataset: grid25}\n")
    with pytest.raises(UserError, match="duplicate key 'fixed'"):
        load_space(str(f))


def test_the_example_user_model_space_resolves_its_model_against_the_start_folder(
        monkeypatch):
    from trainers.data import DATASETS
    from trainers.model_check import check_model

    root = Path(__file__).resolve().parents[3]
    monkeypatch.chdir(root)
    space = load_space("examples/resmlp-space.yaml")
    assert space.fixed["model"] == f"{root / 'examples' / 'resmlp.py'}:build"
    assert space.base == str(root)
    (cfg,) = space.model_configs()
    check_model(cfg, DATASETS[cfg.dataset].shape)


def test_a_model_choice_is_resolved_and_each_choice_probed(tmp_path):
    doc = {"fixed": {"dataset": "ring8"},
           "params": {"model": {"choice": ["mlp", "nets.py:build"]},
                      "lr_g": {"log_uniform": [1e-4, 1e-3]}}}
    space = parse_space(doc, base=tmp_path)
    assert space.params[0].values == ("mlp", f"{tmp_path.resolve()}/nets.py:build")
    assert [c.model for c in space.model_configs()] == list(space.params[0].values)
