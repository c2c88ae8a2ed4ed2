"""Population training (trainers/population.py): K members in one batched run equal K runs."""

from __future__ import annotations

import math

import pytest
import torch

from tests.trainers.population_checks import (
    check_a_poisoned_member_freezes,
    check_resume_is_exact,
    weights,
)
from trainers import names
from trainers.config import ConfigError, make_config
from trainers.penalties import PENALTIES
from trainers.population import Population
from trainers.reference import ReferenceRun

BASE = {"dataset": "ring8", "steps": 20, "eval_every": 10, "hidden": 16, "depth": 2,
        "batch_size": 32, "eval_samples": 300, "device": "cpu"}


pytestmark = pytest.mark.usefixtures("one_thread")


def member_configs(loss: str, seeds=(0, 1, 2), **extra):
    # Members differ in every per-member hyperparameter the loss uses.
    return [make_config({**BASE, "loss": loss, "seed": s, "lr_d": 1e-3 * (1 + s),
                         "lr_g": 5e-4 * (1 + s), "gp_lambda": 0.5 + s, "clip_value": 0.05 * (1 + s),
                         "penalty_weight": 0.3 + s, "beta1": 0.5 - 0.1 * (s % 3), **extra})
            for s in seeds]


DIGITS = {"dataset": "digits", "steps": 6, "eval_every": 3, "hidden": 4, "batch_size": 16,
          "eval_samples": 200, "n_critic": 2, "device": "cpu"}


def reference_weights(ref: ReferenceRun) -> list[torch.Tensor]:
    return [*ref.G.state_dict().values(), *ref.D.state_dict().values()]


def _check_members_match_single_runs(pop: Population, cfgs, tol: dict) -> None:
    got = pop.run()
    samples = pop.sample()
    for j, cfg in enumerate(cfgs):
        ref = ReferenceRun(cfg, pop.data)
        ref.run(cfg.steps)
        # State dicts include the conv generator's batch-norm running statistics.
        for a, b in zip(reference_weights(ref), weights(pop, j), strict=True):
            torch.testing.assert_close(b, a, **tol)
        torch.testing.assert_close(samples[j], ref.sample(), **tol)
        want = pop.data.evaluate(ref.sample())
        assert got[j][names.STEP] == cfg.steps
        for key in (names.FID, names.HQ_FRACTION, names.SEED_SCORE):
            assert got[j][key] == pytest.approx(want[key], rel=1e-3, abs=1e-4), key
        assert got[j][names.MODES_HELD] == want[names.MODES_HELD]
        assert got[j][names.SEED_SUCCESS] == want[names.SEED_SUCCESS]


@pytest.mark.parametrize("loss", ["bce", "bce-ns", "wgan-clip", "wgan-gp"])
def test_member_j_matches_a_single_run_with_seed_j(loss):
    # The single run is the plain PyTorch loop (trainers/reference.py): nn.Linear layers,
    # torch.optim's Adam / RMSprop, the losses written out.
    cfgs = member_configs(loss, lr_schedule="linear")
    _check_members_match_single_runs(Population(cfgs), cfgs, {"rtol": 1e-5, "atol": 1e-5})


@pytest.mark.parametrize("loss", ["wgan", "bce-ns"])
@pytest.mark.parametrize("penalty", sorted(PENALTIES))
def test_member_j_with_a_penalty_matches_a_single_run_with_seed_j(loss, penalty):
    # The reference writes each penalty out; members differ in the penalty weight.
    cfgs = member_configs(loss, penalty=penalty)
    _check_members_match_single_runs(Population(cfgs), cfgs, {"rtol": 1e-5, "atol": 1e-5})


@pytest.mark.parametrize("loss", ["bce-ns", "wgan-gp"])
def test_tanh_orthogonal_members_match_single_runs(loss):
    # GDPP's toy networks (tanh, orthogonal init): the stacked MLP applies the members'
    # activation, and each member's init draws from its own seed.
    cfgs = member_configs(loss, seeds=(0, 1), activation="tanh", init="orthogonal")
    _check_members_match_single_runs(Population(cfgs), cfgs, {"rtol": 1e-5, "atol": 1e-5})


def test_a_stacked_mlp_refuses_members_with_different_activations():
    from trainers.batched import StackedMLP
    from trainers.models import mlp

    with pytest.raises(ValueError, match="mix activations"):
        StackedMLP.stack([mlp(2, 1, 4, 2), mlp(2, 1, 4, 2, activation="tanh")])


def test_wgan_with_the_two_sided_penalty_is_wgan_gp():
    # `wgan-gp` is kept as a loss for old configs; it must be the same run, draw for draw.
    gp = member_configs("wgan-gp", seeds=(1, 2))
    composed = [c.replace(loss="wgan", penalty="gp", penalty_weight=c.gp_lambda) for c in gp]
    a, b = Population(gp), Population(composed)
    a.train_until(12)
    b.train_until(12)
    for j in range(2):
        for x, y in zip(weights(a, j), weights(b, j), strict=True):
            assert torch.equal(x, y)


@pytest.mark.parametrize("loss", ["bce", "bce-ns", "wgan-clip", "wgan-gp"])
def test_conv_member_j_matches_a_single_run_with_seed_j(loss, classifier_cache):
    # Grouped convolutions add up in another order than K separate ones: float round-off.
    # With clipping, a weight that round-off puts a hair either side of +-c is clamped in one
    # run and not in the other, and six steps grow that to ~2e-4 on a few weights on some
    # CPUs (AMD EPYC). A wrong draw order or update differs by orders of magnitude more.
    tol = {"rtol": 1e-3, "atol": 5e-4} if loss == "wgan-clip" else {"rtol": 1e-4, "atol": 1e-5}
    cfgs = member_configs(loss, **DIGITS)
    _check_members_match_single_runs(Population(cfgs), cfgs, tol)


def test_the_same_batches_as_a_single_run():
    from trainers import rng

    cfgs = member_configs("wgan-gp", seeds=(4, 5, 6))
    pop = Population(cfgs)
    ref = ReferenceRun(cfgs[1], pop.data)
    for step in (0, 1, 7):  # member 1's draws are those of seed 5 alone, whatever K is
        many = rng.step_noise(pop.keys, pop.layout, step)
        one = rng.step_noise(ref.keys, ref.layout, step)
        for name in ("real_u", "real_z", "fake_z", "eps", "gen_z"):
            assert torch.equal(getattr(many, name)[1], getattr(one, name)[0]), name
    assert torch.equal(pop.sample()[1], pop.G(pop.eval_z)[1])
    torch.testing.assert_close(pop.sample()[1], ref.sample(), rtol=1e-6, atol=1e-6)


def test_a_members_trajectory_does_not_depend_on_the_others():
    (seven,) = member_configs("wgan-gp", seeds=(7,))
    alone = Population([seven])
    crowd = Population([seven, *member_configs("wgan-gp", seeds=(3, 9))])
    alone.train_until(20)
    crowd.train_until(20)
    # Seed 7 with the same hyperparameters is member 0 of both populations. Equal up to float
    # round-off: a batch of one matrix may take another BLAS kernel than a batch of three,
    # and 20 steps of GAN training grow that to ~1e-6 (other draws differ by ~1e-2).
    for a, b in zip(weights(alone, 0), weights(crowd, 0), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_nan_member_is_frozen_and_the_others_continue_bit_for_bit():
    def poison(pop):
        pop.D.weights[0][1].fill_(math.nan)  # member 1's critic blows up at step 5

    final = check_a_poisoned_member_freezes(member_configs("wgan-gp", steps=40), poison,
                                            start=5, end=40)
    assert final[1][names.SEED_SUCCESS] == 0 and final[1][names.SEED_SCORE] == 1.0


@pytest.mark.parametrize("conv", [False, True])
def test_checkpoint_resume_is_exact(tmp_path, conv, classifier_cache):
    # RMSProp, clipping, decay; the conv generator's batch-norm statistics too
    cfgs = member_configs("wgan-clip", lr_schedule="linear",
                          **({**DIGITS, "steps": 20, "eval_every": 10} if conv else {}))
    check_resume_is_exact(cfgs, tmp_path)


def test_members_must_share_the_shape():
    cfgs = member_configs("wgan-gp", seeds=(0, 1))
    with pytest.raises(ConfigError, match="must share n_critic"):
        Population([cfgs[0], cfgs[1].replace(n_critic=2)])
    with pytest.raises(ConfigError, match="must share dataset"):
        Population([cfgs[0], cfgs[1].replace(dataset="grid25")])


def test_a_nan_conv_member_is_frozen_with_its_batch_norm_statistics(classifier_cache):
    def poison(pop):
        pop.D.conv1_weight[1].fill_(math.nan)

    check_a_poisoned_member_freezes(member_configs("wgan-gp", **{**DIGITS, "steps": 30,
                                                                 "eval_every": 30}),
                                    poison, start=2, end=30)


@pytest.mark.parametrize("chunk", [1, 2])
def test_populations_in_turn_are_the_same_members(tmp_path, chunk):
    from trainers.members import Populations, load_members_file, save_members_file

    cfgs = member_configs("wgan-gp")
    together, apart = Population(cfgs), Populations(cfgs, chunk=chunk)
    assert [r.k for r in apart.runs] == ([1, 1, 1] if chunk == 1 else [2, 1])
    apart.train_until(10)
    apart.evaluate()
    save_members_file(apart, tmp_path / "m.pt")
    resumed = load_members_file(tmp_path / "m.pt", device="cpu")
    assert isinstance(resumed, Populations) and resumed.step == 10
    together.train_until(20)
    resumed.train_until(20)
    for a, b in zip(together.evaluate(), resumed.evaluate(), strict=True):
        for key in (names.STEP, names.FID, names.HQ_FRACTION, names.GRAD_NORM):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    assert resumed.sample().shape == together.sample().shape == (3, 300, 2)


def test_members_train_as_one_population_at_every_size():
    from trainers.members import Populations, make_members

    big = member_configs("wgan-gp", seeds=range(10), hidden=128, batch_size=512, steps=2)
    assert isinstance(make_members(big), Population)  # no CPU chunks: the step is O(1) in K
    assert isinstance(make_members(big, batched=False), Populations)


def test_an_old_checkpoint_is_one_line_and_a_trial_starts_over(tmp_path):
    # Before the counter-based streams a checkpoint held each member's torch.Generator state;
    # continuing it with other streams would not be the same run.
    from trainers.members import load_members_file

    pop = Population(member_configs("wgan-gp", seeds=(0,)))
    state = pop.state_dict()
    del state["format"]
    state["gens"] = [torch.Generator().get_state()]
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ConfigError, match="older gan-sweeper.*start over"):
        load_members_file(tmp_path / "old.pt")


def test_dataset_specs_know_their_sample_shape(classifier_cache):
    from trainers.data import DATASETS, build_dataset

    for name in ("ring8", "grid25", "digits", "stacked-digits"):
        data = build_dataset(make_config({"dataset": name, "eval_samples": 100}),
                             torch.device("cpu"))
        assert tuple(data.shape) == DATASETS[name].shape and data.kind == DATASETS[name].kind


@pytest.mark.parametrize("conv", [False, True])
def test_kept_members_train_on_as_if_none_had_been_dropped(conv, classifier_cache):
    # Successive halving drops members mid-run: the kept ones must not notice.
    cfgs = member_configs("wgan-clip", seeds=(0, 1, 2, 3), lr_schedule="linear",
                          **({**DIGITS, "steps": 8, "eval_every": 4} if conv else {}))
    half = cfgs[0].steps // 2
    full, halved = Population(cfgs), Population(cfgs)
    full.train_until(half)
    halved.train_until(half)
    halved.evaluate()
    seconds = halved.train_seconds
    halved = halved.keep([3, 1])
    assert halved.k == 2 and [c.seed for c in halved.configs] == [3, 1]
    assert halved.train_seconds == pytest.approx(seconds / 2)  # two members' share of four
    assert halved.step == half and halved.opt_d.t == full.opt_d.t
    full.run()
    halved.run()
    for mine, theirs in ((0, 3), (1, 1)):
        for a, b in zip(weights(halved, mine), weights(full, theirs), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="distinct member indices"):
        halved.keep([0, 0])


def test_a_diverged_member_stays_diverged_when_kept():
    cfgs = member_configs("wgan-gp", seeds=(0, 1, 2))
    pop = Population(cfgs)
    pop.train_until(10)
    with torch.no_grad():
        pop.D.weights[0][2].fill_(math.nan)
    pop.evaluate()
    kept = pop.keep([2, 0])
    assert kept._dead == [True, False]
    assert kept.evaluate()[0][names.DIVERGED] == 1.0


def test_populations_in_turn_keep_their_members():
    from trainers.members import Populations

    cfgs = member_configs("wgan-gp")
    apart = Populations(cfgs, chunk=2)
    apart.train_until(10)
    kept = apart.keep([0, 2])
    assert [c.seed for c in kept.configs] == [0, 2] and [r.k for r in kept.runs] == [1, 1]
    assert kept.step == 10


def test_the_outer_loop_evaluates_on_schedule_and_its_pieces_change_nothing() -> None:
    # trainers.population.evaluations is every caller's outer loop: an evaluation at each
    # eval_every and at the end; `chunk` adds stops at its multiples (a checkpoint, a bar)
    from trainers.population import evaluations

    cfgs = member_configs("wgan-gp", steps=10, eval_every=4)
    whole, pieces = Population(cfgs), Population(cfgs)
    want = [(whole.step, m) for m in evaluations(whole)]
    stops: list[int] = []
    got = list(evaluations(pieces, chunk=3, trained=lambda: stops.append(pieces.step)))
    assert [step for step, _ in want] == [4, 8, 10] and len(got) == 3
    assert stops == [3, 4, 6, 8, 9, 10]
    timing = ("train_seconds", "eval_seconds")
    for (_, a), b in zip(want, got, strict=True):
        assert [{k: v for k, v in m.items() if k not in timing} for m in a] == \
            [{k: v for k, v in m.items() if k not in timing} for m in b]
    # a finished population still gives its metrics once
    assert len(list(evaluations(whole))) == 1
