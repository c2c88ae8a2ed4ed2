"""The loss strategies, the gradient penalty and its interpolates (trainers/losses.py).

Tensors are a population's, [K, B, ...] with the member first; most cases here are one
member (K = 1), and the per-member cases use K linear critics of `StackedMLP`."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.trainers.critics import linear_critic, linear_population, pair, x_hat_of
from trainers.batched import StackedMLP
from trainers.config import CONDITIONAL, applies
from trainers.losses import (
    LOSSES,
    WGANGP,
    BCEMinimax,
    BCENonSaturating,
    WGANClip,
    make_loss,
)
from trainers.models import mlp
from trainers.penalties import (
    PENALTIES,
    interpolation_eps,
)

torch.set_num_threads(1)


# ------------------------------------------------------------------------ WGAN-GP
def test_per_member_penalty_weights_and_penalties() -> None:
    # K = 3 linear critics w_j: member j's loss is its own W estimate + lambda_j (|w_j| - 1)^2.
    w, critic, real, fake, eps = linear_population()
    lam = torch.tensor([0.5, 10.0, 2.0], dtype=torch.float64)
    got = WGANGP(lam).critic_loss(critic, real, fake, eps)
    wgan = (fake @ w[:, :, None]).mean((1, 2)) - (real @ w[:, :, None]).mean((1, 2))
    torch.testing.assert_close(got, wgan + lam * (w.norm(dim=1) - 1) ** 2)


def test_interpolates_use_per_sample_eps_in_unit_interval() -> None:
    n = 256
    real = torch.ones(1, n, 3, 4, 4, dtype=torch.float64)
    fake = torch.zeros(1, n, 3, 4, 4, dtype=torch.float64)
    x_hat = x_hat_of(real, fake, 0)
    eps = x_hat.flatten(2)[0]
    # one eps per sample, shared by every pixel of that sample
    torch.testing.assert_close(eps, eps[:, :1].expand_as(eps), rtol=0, atol=0)
    eps = eps[:, 0]
    assert eps.min() >= 0 and eps.max() <= 1
    assert eps.unique().numel() == n  # not one eps for the whole batch
    # roughly U[0, 1]: mean 1/2 with s.e. 1/sqrt(12 n) = 0.018
    assert abs(eps.mean().item() - 0.5) < 4 / math.sqrt(12 * n)


def test_interpolates_lie_on_the_segment_and_follow_the_generator() -> None:
    real, fake = pair(32, 5)
    x_hat = x_hat_of(real, fake, 3)
    direction = real - fake
    eps = ((x_hat - fake) * direction).sum(2) / (direction * direction).sum(2)
    torch.testing.assert_close(x_hat, fake + eps[..., None] * direction, rtol=0, atol=1e-12)
    assert eps.min() >= 0 and eps.max() <= 1
    torch.testing.assert_close(x_hat, x_hat_of(real, fake, 3), rtol=0, atol=0)


# ----------------------------------------------------------------------------- clipping
def test_clipping_keeps_every_critic_weight_in_range_after_a_large_step() -> None:
    torch.manual_seed(0)
    critic = mlp(2, 1, 32, 3)
    loss = make_loss("wgan-clip", gp_lambda=10.0, clip_value=0.01)
    loss.after_critic_step(critic)  # start inside the box, as the trainer does after step 1
    opt = torch.optim.RMSprop(critic.parameters(), lr=1.0)
    g = torch.Generator().manual_seed(0)
    real = torch.randn(1, 64, 2, generator=g)
    fake = torch.randn(1, 64, 2, generator=g) + 3
    opt.zero_grad()
    loss.critic_loss(critic, real, fake).sum().backward()
    opt.step()
    before = max(p.abs().max().item() for p in critic.parameters())
    assert before > 0.01  # the step really left the box ...
    loss.after_critic_step(critic)
    c = torch.tensor(0.01)  # the bound in float32, like the weights
    for p in critic.parameters():  # ... and clipping brought every weight back
        assert p.min() >= -c and p.max() <= c
    assert max(p.abs().max().item() for p in critic.parameters()) == pytest.approx(0.01)


def test_each_member_is_clipped_to_its_own_value() -> None:
    g = torch.Generator().manual_seed(0)
    critic = StackedMLP([torch.randn(2, 3, 4, generator=g), torch.randn(2, 4, 1, generator=g)],
                        [torch.randn(2, 1, 4, generator=g), torch.randn(2, 1, 1, generator=g)])
    WGANClip(torch.tensor([0.01, 0.5])).after_critic_step(critic)
    for p in critic.parameters():
        assert p[0].abs().max() <= 0.01 and p[1].abs().max() <= 0.5
    assert max(p[1].abs().max().item() for p in critic.parameters()) == pytest.approx(0.5)


def test_only_wgan_clip_clips() -> None:
    for name in ("bce", "bce-ns", "wgan-gp"):
        critic = nn.Linear(2, 1)
        with torch.no_grad():
            critic.weight.fill_(5.0)
        make_loss(name, gp_lambda=10.0, clip_value=0.01).after_critic_step(critic)
        assert critic.weight.min().item() == 5.0, name


# ----------------------------------------------------------------------------- loss formulas
def _scores(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 50, 1, generator=g, dtype=torch.float64) * 3,
            torch.randn(1, 50, 1, generator=g, dtype=torch.float64) * 3 - 1)


class _Table(nn.Module):
    """A 'critic' that returns the first column of its input: scores are chosen directly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :1]


def test_bce_critic_loss_is_the_discriminator_cross_entropy() -> None:
    s_real, s_fake = _scores()
    expected = (-torch.log(torch.sigmoid(s_real)).mean()
                - torch.log(1 - torch.sigmoid(s_fake)).mean())
    for loss in (BCEMinimax(), BCENonSaturating()):
        got = loss.critic_loss(_Table(), s_real, s_fake)
        assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_minimax_generator_loss_is_mean_log_one_minus_d() -> None:
    _, s = _scores(1)
    expected = torch.log(1 - torch.sigmoid(s)).mean()
    assert BCEMinimax().generator_loss(s).item() == pytest.approx(expected.item(), rel=1e-12)


def test_non_saturating_generator_loss_is_minus_mean_log_d() -> None:
    _, s = _scores(2)
    expected = -torch.log(torch.sigmoid(s)).mean()
    got = BCENonSaturating().generator_loss(s)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_bce_losses_are_finite_for_extreme_logits() -> None:
    s = torch.tensor([[[-200.0], [200.0]]], dtype=torch.float32)
    for loss in (BCEMinimax(), BCENonSaturating()):
        assert torch.isfinite(loss.generator_loss(s))
        assert torch.isfinite(loss.critic_loss(_Table(), s, s))


def test_wgan_losses_match_their_formulas() -> None:
    s_real, s_fake = _scores(3)
    for loss in (WGANClip(0.01),):
        got = loss.critic_loss(_Table(), s_real, s_fake)
        assert got.item() == pytest.approx((s_fake.mean() - s_real.mean()).item(), rel=1e-12)
        assert loss.generator_loss(s_fake).item() == pytest.approx(-s_fake.mean().item())
        assert loss.wasserstein
    assert not BCEMinimax.wasserstein and not BCENonSaturating.wasserstein


def test_wgan_gp_critic_loss_adds_lambda_times_the_penalty() -> None:
    w = [3.0, 4.0]
    critic = linear_critic(w, b=0.0)
    real, fake = pair(40, 2)
    w_t = torch.tensor(w, dtype=torch.float64)
    wgan = (fake @ w_t).mean() - (real @ w_t).mean()
    eps = torch.rand(1, 40, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for lam in (0.0, 0.1, 10.0):
        got = WGANGP(lam).critic_loss(critic, real, fake, eps)
        assert got.item() == pytest.approx(wgan.item() + lam * 16.0, rel=1e-12)
        assert WGANGP(lam).generator_loss(fake @ w_t).item() == pytest.approx(
            -(fake @ w_t).mean().item())
    assert WGANGP.wasserstein and WGANGP.needs_interpolates
    with pytest.raises(ValueError, match="needs the interpolation eps"):
        WGANGP(1.0).critic_loss(critic, real, fake)


def test_make_loss_maps_names_to_strategies_with_their_constants() -> None:
    clip = make_loss("wgan-clip", gp_lambda=3.0, clip_value=0.2)
    gp = make_loss("wgan-gp", gp_lambda=3.0, clip_value=0.2)
    assert isinstance(clip, WGANClip) and clip.clip_value == 0.2
    assert isinstance(gp, WGANGP) and gp.gp_lambda == 3.0
    assert type(make_loss("bce", gp_lambda=1, clip_value=1)) is BCEMinimax
    assert type(make_loss("bce-ns", gp_lambda=1, clip_value=1)) is BCENonSaturating


# ------------------------------------------------------------- the registry's contract
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_registered_loss_keeps_the_registry_contract(name: str) -> None:
    from trainers.config import FIELDS, LOSS_DEFAULTS, make_config

    cls = LOSSES[name]
    assert cls.title and cls.source  # shown in --help and the README
    assert set(cls.uses) <= set(FIELDS) and set(cls.defaults) <= set(FIELDS)
    cfg = make_config({"loss": name})
    for key, value in cls.defaults.items():  # make_config fills in the reference defaults
        assert getattr(cfg, key) == value
    assert LOSS_DEFAULTS[name] == cls.defaults
    loss = make_loss(name, **{f: getattr(cfg, f) for f in cls.uses})
    assert type(loss) is cls
    # Every loss gives per-member [K] losses on a population of two linear critics.
    critic = StackedMLP.stack([mlp(2, 1, 4, 1), mlp(2, 1, 4, 1)])
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2, 8, 2, generator=g), torch.randn(2, 8, 2, generator=g)
    eps = interpolation_eps(8, 1, g).expand(2, 8, 1) if loss.needs_interpolates else None
    assert loss.critic_loss(critic, real, fake, eps).shape == (2,)
    assert loss.generator_loss(critic(fake)).shape == (2,)


def test_conditional_fields_name_the_strategies_that_use_them() -> None:
    assert CONDITIONAL == {"gp_lambda": ("loss", ("wgan-gp",)),
                           "clip_value": ("loss", ("wgan-clip",)),
                           "penalty_weight": ("penalty", tuple(PENALTIES))}
    assert applies("gp_lambda", {"loss": "wgan-gp"})
    assert not applies("gp_lambda", {"loss": "bce"})
    assert applies("lr_d", {"loss": "bce"})  # shared by every loss
    assert applies("penalty_weight", {"loss": "bce", "penalty": "gp"})
    assert not applies("penalty_weight", {"loss": "wgan-gp", "penalty": "none"})
    # Runs logged before penalties existed have no `penalty` param: it was none.
    assert not applies("penalty_weight", {"loss": "wgan-gp"})
