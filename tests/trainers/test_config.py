"""TrialConfig validation, per-loss defaults, coercion and config files (trainers/config.py)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainers.config import (
    FIELDS,
    LOSS_DEFAULTS,
    LOSSES,
    ConfigError,
    TrialConfig,
    load_config_file,
    make_config,
)


def _one_line_error(values: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        make_config(values)
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    return msg


# ----------------------------------------------------------------------------- defaults
def test_wgan_clip_defaults_are_the_wgan_paper() -> None:
    c = make_config({"loss": "wgan-clip"})
    assert (c.optimizer, c.lr_g, c.lr_d, c.clip_value, c.n_critic) == (
        "rmsprop", 5e-5, 5e-5, 0.01, 5)


def test_wgan_gp_defaults_are_the_wgan_gp_code() -> None:
    c = make_config({"loss": "wgan-gp"})
    assert (c.optimizer, c.lr_g, c.lr_d, (c.beta1, c.beta2), c.gp_lambda, c.n_critic) == (
        "adam", 1e-4, 1e-4, (0.5, 0.9), 10.0, 5)
    assert make_config() == c  # wgan-gp is the default loss, and the dataclass agrees
    assert TrialConfig() == c


@pytest.mark.parametrize("loss", ["bce", "bce-ns"])
def test_bce_defaults_are_dcgan_with_one_critic_step(loss: str) -> None:
    c = make_config({"loss": loss})
    assert (c.optimizer, c.lr_g, c.lr_d, c.beta1, c.beta2, c.n_critic) == (
        "adam", 2e-4, 2e-4, 0.5, 0.999, 1)


def test_every_loss_has_defaults_and_every_default_key_is_a_field() -> None:
    assert set(LOSS_DEFAULTS) == set(LOSSES)
    for defaults in LOSS_DEFAULTS.values():
        assert set(defaults) <= set(FIELDS)


def test_explicit_values_override_loss_defaults() -> None:
    c = make_config({"loss": "wgan-clip", "lr_d": 1e-3, "n_critic": 2})
    assert (c.lr_d, c.n_critic, c.lr_g, c.optimizer) == (1e-3, 2, 5e-5, "rmsprop")


def test_replace_keeps_other_fields_and_does_not_refill_defaults() -> None:
    c = make_config({"loss": "wgan-clip", "lr_g": 1e-3})
    r = c.replace(loss="wgan-gp", seed=3)
    assert (r.loss, r.seed, r.lr_g, r.optimizer) == ("wgan-gp", 3, 1e-3, "rmsprop")
    assert make_config(r.to_dict(), fill_loss_defaults=False) == r
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.seed = 4  # type: ignore[misc]


# ----------------------------------------------------------------------------- rejections
def test_unknown_key_lists_the_valid_keys() -> None:
    msg = _one_line_error({"learning_rate": 1e-4})
    assert "'learning_rate'" in msg
    for name in FIELDS:
        assert name in msg


@pytest.mark.parametrize("values,field", [
    ({"gp_lambda": -0.1}, "gp_lambda"),
    ({"n_critic": 0}, "n_critic"),
    ({"lr_g": 0.0}, "lr_g"),
    ({"lr_d": -1e-4}, "lr_d"),
    ({"clip_value": 0.0}, "clip_value"),
    ({"clip_value": -0.01}, "clip_value"),
    ({"lr_d": math.nan}, "lr_d"),
    ({"gp_lambda": math.inf}, "gp_lambda"),
    ({"beta1": -math.inf}, "beta1"),
    ({"beta1": 1.0}, "beta1"),  # half-open: Adam needs beta < 1
    ({"steps": True}, "steps"),  # bool is not an int here
    ({"n_critic": False}, "n_critic"),
    ({"lr_g": True}, "lr_g"),
    ({"download": 1}, "download"),
    ({"steps": 2.5}, "steps"),
    ({"batch_size": "many"}, "batch_size"),
    ({"lr_g": "fast"}, "lr_g"),
    ({"lr_g": "nan"}, "lr_g"),
    ({"lr_g": 10**400}, "lr_g"),
    ({"seed": -1}, "seed"),
    ({"optimizer": "sgd"}, "optimizer"),
    ({"device": "tpu"}, "device"),
    ({"fid_backend": "lenet"}, "fid_backend"),
])
def test_out_of_range_values_raise_one_line_config_error(values: dict, field: str) -> None:
    msg = _one_line_error(values)
    assert field in msg


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="n_critic"):
        TrialConfig(n_critic=0)
    with pytest.raises(ConfigError, match="lr_g"):
        TrialConfig(lr_g=1)  # an int where a float is declared: use make_config to coerce


def test_unknown_loss_and_dataset_messages_name_the_choices() -> None:
    msg = _one_line_error({"loss": "hinge"})
    assert "'hinge'" in msg and all(loss in msg for loss in LOSSES)
    msg = _one_line_error({"dataset": "ring7"})
    assert "'ring7'" in msg and "ring8" in msg and "grid25" in msg


# ----------------------------------------------------------------------------- coercion
def test_strings_and_whole_floats_are_coerced() -> None:
    c = make_config({"lr_g": "1e-4", "n_critic": "5", "steps": 300.0, "gp_lambda": 3,
                     "download": "True"})
    assert c.lr_g == 1e-4 and isinstance(c.lr_g, float)
    assert c.n_critic == 5 and isinstance(c.n_critic, int)
    assert c.steps == 300 and isinstance(c.steps, int)
    assert c.gp_lambda == 3.0 and isinstance(c.gp_lambda, float)
    assert c.download is True


# ----------------------------------------------------------------------------- files
def test_load_config_file_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "best.yaml"
    p.write_text("loss: wgan-clip\nlr_d: 1e-4\nn_critic: '3'\nclip_value: 0.05\n")
    values = load_config_file(p)
    c = make_config(values)
    assert (c.loss, c.lr_d, c.n_critic, c.clip_value, c.lr_g) == (
        "wgan-clip", 1e-4, 3, 0.05, 5e-5)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config_file(empty) == {}


@pytest.mark.parametrize("text,fragment", [
    ("loss: [unclosed\n", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    ("los: bce\n", "unknown key 'los'"),
])
def test_bad_config_files_raise_one_line_errors(tmp_path: Path, text: str, fragment: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config_file(p)
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg and str(p) in msg


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- property
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["1e-4", "5", "0", "-3", "nan", "inf", "true", "False", "adam", "rmsprop",
                     "ring8", "grid25", "cpu", "cuda:1", *LOSSES]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_keys = st.one_of(st.sampled_from(sorted(FIELDS)), st.text(min_size=1, max_size=10))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _values, max_size=5), st.booleans())
def test_any_dict_builds_a_config_or_raises_a_one_line_config_error(
        values: dict[str, Any], fill: bool) -> None:
    try:
        c = make_config(values, fill_loss_defaults=fill)
    except ConfigError as e:
        msg = str(e)
        assert msg and "\n" not in msg
        return
    assert isinstance(c, TrialConfig)
    for name, f in FIELDS.items():  # every built config holds values of the declared types
        v = getattr(c, name)
        assert type(v).__name__ == str(f.type), (name, v)
    assert make_config(c.to_dict(), fill_loss_defaults=False) == c


# ----------------------------------------------------------------------------- strict YAML
def test_yaml_reads_1e_minus_4_as_a_float_and_refuses_duplicates_and_aliases(tmp_path):
    from trainers.config import load_config_file, load_yaml

    assert load_yaml("lr_g: 1e-4\nlr_d: 2.0e-3\nsteps: 3\nname: '1e-4'") == {
        "lr_g": 1e-4, "lr_d": 2e-3, "steps": 3, "name": "1e-4"}
    dup = tmp_path / "dup.yaml"
    dup.write_text("lr_g: 1e-4\nlr_g: 1e-3\n")
    with pytest.raises(ConfigError, match="duplicate key 'lr_g'"):
        load_config_file(dup)
    # A 'billion laughs' alias bomb: refused at the first alias, before it expands.
    bomb = tmp_path / "bomb.yaml"
    levels = zip("abcdefgh", "bcdefghi", strict=True)
    bomb.write_text("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in levels))
    with pytest.raises(ConfigError, match="aliases") as e:
        load_config_file(bomb)
    assert len(str(e.value)) < 600


def test_error_lines_quote_a_bounded_excerpt(capsys):
    from sweeper.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--loss", "x" * 10_000, "--no-track"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and len(err) < 700, len(err)
