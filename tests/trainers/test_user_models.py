"""Any GAN as a population (issue 36): a user's generator and critic train with every loss as
a batched population through torch.func, and member j ends where the plain PyTorch run with
seed j ends (trainers/reference.py); every way a user's model can be wrong is one line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.trainers.population_checks import (
    check_a_poisoned_member_freezes,
    check_resume_is_exact,
    weights,
)
from trainers import names
from trainers.config import ConfigError, make_config
from trainers.data import DATASETS
from trainers.model_check import check_model
from trainers.population import Population
from trainers.reference import ReferenceRun
from trainers.stacked import FuncStack
from trainers.user_models import model_params, resolve_spec, source_digest

ROOT = Path(__file__).resolve().parents[2]
NETS = str(ROOT / "tests" / "trainers" / "user_nets.py")
RESMLP = str(ROOT / "examples" / "resmlp.py") + ":build"
RING = {"dataset": "ring8", "steps": 12, "eval_every": 6, "hidden": 16, "depth": 2,
        "batch_size": 32, "eval_samples": 300, "device": "cpu"}
DIGITS = {"dataset": "digits", "steps": 6, "eval_every": 3, "hidden": 4, "batch_size": 16,
          "eval_samples": 200, "n_critic": 2, "device": "cpu"}

pytestmark = pytest.mark.usefixtures("one_thread", "classifier_cache")


def configs(model: str, loss: str, base: dict, seeds=(0, 1, 2), **extra):
    return [make_config({**base, "model": model, "loss": loss, "seed": s, "lr_d": 1e-3 * (1 + s),
                         "lr_g": 5e-4 * (1 + s), "gp_lambda": 0.5 + s,
                         "clip_value": 0.05 * (1 + s), "beta1": 0.5 - 0.1 * s, **extra})
            for s in seeds]


def check_against_reference(pop: Population, cfgs, tol) -> None:
    got = pop.run()
    samples = pop.sample()
    for j, cfg in enumerate(cfgs):
        ref = ReferenceRun(cfg, pop.data)
        ref.run(cfg.steps)
        want = [*ref.G.state_dict().values(), *ref.D.state_dict().values()]
        mine = weights(pop, j)
        assert len(mine) == len(want)
        for a, b in zip(want, mine, strict=True):
            torch.testing.assert_close(b, a, **tol)
        torch.testing.assert_close(samples[j], ref.sample(), **tol)
        assert got[j][names.STEP] == cfg.steps and got[j][names.DIVERGED] == 0


@pytest.mark.parametrize("loss", ["bce-ns", "wgan-clip", "wgan-gp"])
def test_a_residual_layernorm_model_matches_single_runs(loss):
    cfgs = configs(RESMLP, loss, RING)
    pop = Population(cfgs)
    assert isinstance(pop.G, FuncStack) and isinstance(pop.D, FuncStack)
    # With clipping, a weight that round-off puts a hair either side of +-c is clamped in one
    # run and not the other (as for the conv nets in test_population.py).
    tol = {"rtol": 1e-3, "atol": 5e-4} if loss == "wgan-clip" else {"rtol": 1e-5, "atol": 1e-5}
    check_against_reference(pop, cfgs, tol)


def test_batch_norm_statistics_stay_per_member():
    cfgs = configs(f"{NETS}:bn_mlp", "wgan-gp", RING, lr_schedule="linear")
    pop = Population(cfgs)
    check_against_reference(pop, cfgs, {"rtol": 1e-5, "atol": 1e-5})
    means = pop.G.member_state_dict(0)["1.running_mean"], pop.G.member_state_dict(1)[
        "1.running_mean"]
    assert not torch.equal(*means)  # each member's own statistics


def test_a_conv_model_with_groupnorm_matches_single_runs():
    cfgs = configs(f"{NETS}:conv_gn", "wgan-gp", DIGITS)
    check_against_reference(Population(cfgs), cfgs, {"rtol": 1e-4, "atol": 1e-5})


def test_a_critic_with_flat_scores_trains():
    cfgs = configs(f"{NETS}:flat_scores", "wgan-gp", RING, seeds=(0, 1))
    check_against_reference(Population(cfgs), cfgs, {"rtol": 1e-5, "atol": 1e-5})


@pytest.mark.parametrize("base", [RING, DIGITS], ids=["mlp", "dcgan"])
def test_the_built_in_models_through_torch_func_match_single_runs(base):
    # The generic population (what any module gets) serves the registered models as well;
    # they keep their hand-written stacks only where benchmarks/population.py finds them faster.
    cfgs = configs("auto", "wgan-gp", base)
    pop = Population(cfgs, stacking="generic")
    assert isinstance(pop.G, FuncStack)
    check_against_reference(pop, cfgs, {"rtol": 1e-4, "atol": 1e-5})


def test_a_nan_member_of_a_user_model_is_frozen_and_the_others_go_on_as_without_it():
    def poison(pop):
        next(pop.D.parameters())[1].fill_(math.nan)

    # Up to round-off: vmap may batch 3 members' matrices otherwise than 2 (the hand-written
    # stacks of test_population.py are bit for bit); a NaN reaching them would show at once.
    check_a_poisoned_member_freezes(
        configs(f"{NETS}:bn_mlp", "wgan-gp", {**RING, "steps": 40, "eval_every": 40}), poison,
        start=3, end=40, exact=False)


def test_a_user_model_checkpoint_resumes_exactly(tmp_path):
    cfgs = configs(f"{NETS}:bn_mlp", "wgan-gp", {**RING, "steps": 20, "eval_every": 10})
    check_resume_is_exact(cfgs, tmp_path)


# ------------------------------------------------------------------ bad input
BAD = {
    "returns_one": "must return (generator, critic), two torch.nn.Modules; it returned Linear",
    "returns_strings": "it returned 2 values (str, str)",
    "raises": "the function raised RuntimeError: out of ideas",
    "wrong_shape": "the generator maps [2, 16] noise to shape [2, 3]; it must give [2, 2]",
    "critic_wrong_shape": "the critic maps [2, 2] samples to shape [2, 4]",
    "nan_init": "the generator gives 4 non-finite values",
    "no_params": "the critic has no parameters",
    "not_batchable": "the critic cannot be batched as a population with torch.func.vmap",
    "missing_function": "has no function 'missing_function'",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_model_is_one_line_naming_it(name):
    cfg = make_config({"model": f"{NETS}:{name}", "dataset": "ring8"})
    with pytest.raises(ConfigError) as e:
        check_model(cfg, DATASETS["ring8"].shape)
    msg = str(e.value)
    assert BAD[name] in msg and "\n" not in msg and f"{name}" in msg, msg


def test_a_missing_file_or_module_and_a_failing_import_are_one_line(tmp_path):
    for spec, needle in ((f"{tmp_path}/nope.py:build", "does not exist"),
                         ("no_such_package.nets:build", "cannot be imported")):
        with pytest.raises(ConfigError, match=needle):
            check_model(make_config({"model": spec}), (2,))
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nraise ImportError('needs a GPU library')\n")
    with pytest.raises(ConfigError, match="raised ImportError: needs a GPU library when imported"):
        check_model(make_config({"model": f"{broken}:build"}), (2,))
    with pytest.raises(ConfigError, match="neither a registered model"):
        make_config({"model": "resnet"})


def test_a_model_for_the_other_kind_of_data_is_refused():
    with pytest.raises(ConfigError, match="model dcgan is for image data"):
        make_config({"model": "dcgan", "dataset": "ring8"})
    with pytest.raises(ConfigError, match="model mlp is for points data"):
        make_config({"model": "mlp", "dataset": "digits"})


def test_a_module_spec_works_like_a_file_spec():
    cfg = make_config({**RING, "model": "tests.trainers.user_nets:bn_mlp"})
    check_model(cfg, (2,))
    assert Population([cfg]).G.member_state_dict(0)["1.running_mean"].shape == (16,)


def test_relative_specs_become_absolute_and_the_file_version_is_recorded(tmp_path,
                                                                        monkeypatch):
    f = tmp_path / "gan.py"
    f.write_text((ROOT / "examples" / "resmlp.py").read_text())
    monkeypatch.chdir(tmp_path)
    spec = resolve_spec("gan.py:build")
    assert spec == f"{f.resolve()}:build"
    assert resolve_spec("mlp") == "mlp" and resolve_spec("pkg.mod:fn") == "pkg.mod:fn"
    before = model_params(make_config({"model": spec}))["model_sha1"]
    assert before == source_digest(spec) and len(before) == 40
    f.write_text(f.read_text() + "\n# changed\n")
    assert model_params(make_config({"model": spec}))["model_sha1"] != before
    assert model_params(make_config({})) == {}
