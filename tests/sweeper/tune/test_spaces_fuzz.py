"""Hostile search-space files: every random document ends in a valid space (whose every
sample is a valid TrialConfig) or in one clear UserError line -- never anything else."""

from __future__ import annotations

import math

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sweeper.errors import UserError
from sweeper.tune.spaces import KINDS, load_space
from trainers.config import FIELDS, LOSSES, make_config

optuna.logging.set_verbosity(optuna.logging.WARNING)

names = st.one_of(st.sampled_from(sorted(FIELDS)), st.text(min_size=1, max_size=12))
scalars = st.one_of(
    st.integers(min_value=-10**30, max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*LOSSES, "ring8", "grid25", "cpu", "", "ünïcødé", "1e-4", "true"]),
    st.booleans(), st.none())
bounds = st.lists(st.one_of(st.integers(-5, 200), st.floats(-1e3, 1e3),
                            st.floats(allow_nan=True)), min_size=0, max_size=3)
param = st.one_of(
    st.fixed_dictionaries({"choice": st.lists(scalars, max_size=4)}),
    st.builds(lambda kind, b: {kind: b}, st.sampled_from(KINDS), bounds),
    st.builds(lambda kind, b, w: {kind: b, "when": w}, st.sampled_from(KINDS), bounds,
              st.dictionaries(names, scalars, max_size=2)),
    scalars)
documents = st.one_of(
    st.fixed_dictionaries({"fixed": st.dictionaries(names, scalars, max_size=4),
                           "params": st.dictionaries(names, param, max_size=4)}),
    st.dictionaries(st.one_of(st.sampled_from(["fixed", "params", "description"]), names),
                    st.one_of(scalars, st.dictionaries(names, param, max_size=3)), max_size=4),
    scalars, st.lists(scalars, max_size=3))


VALID = {"fixed": {"dataset": "ring8"},
         "params": {"loss": {"choice": ["wgan-gp", "bce"]},
                    "gp_lambda": {"log_uniform": [0.1, 10], "when": {"loss": "wgan-gp"}}}}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=documents)
@example(doc=VALID)
def test_random_space_documents_are_valid_or_one_clear_line(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("fuzz") / "space.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    try:
        space = load_space(str(path))
    except UserError as e:
        msg = str(e)
        assert msg and "\n" not in msg and str(path) in msg
        return
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):  # a valid space never yields an invalid trial
        trial = study.ask()
        fixed = space(trial)
        cfg = make_config({**fixed, **trial.params})
        for v in cfg.to_dict().values():
            assert not (isinstance(v, float) and not math.isfinite(v))
        study.tell(trial, 0.0)


def test_yaml_that_is_not_even_yaml(tmp_path):
    for text in ("params: [unclosed", "\x00\x01", ":\n  - : -", "params: !!python/object x"):
        p = tmp_path / "s.yaml"
        p.write_bytes(text.encode("utf-8"))
        with pytest.raises(UserError) as e:
            load_space(str(p))
        assert "\n" not in str(e.value)
