"""The Lipschitz-penalty family (trainers/penalties.py), against closed forms.

A linear critic c(x) = w.x + b has gradient w at every point, so each penalty has a closed
form in ||w|| and so has its gradient with respect to w:
  gp  (||w|| - 1)^2            d/dw = 2 (||w|| - 1) w / ||w||
  lp  max(0, ||w|| - 1)^2      d/dw = 2 max(0, ||w|| - 1) w / ||w||
  r1  ||w||^2 / 2              d/dw = w
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.trainers.critics import linear_critic, linear_population, pair, x_hat_of
from trainers.config import ConfigError, make_config
from trainers.penalties import (
    PENALTIES,
    R1,
    OneSidedLP,
    TwoSidedGP,
    critic_grad_norms,
    gradient_penalty,
    interpolation_eps,
    make_penalty,
)

torch.set_num_threads(1)

WS = [[3.0, 4.0], [0.6, 0.8], [0.1, -0.2], [1.0, 2.0, 2.0], [0.3, 0.4]]
CLOSED_FORM = {
    "gp": (lambda n: (n - 1) ** 2, lambda n: 2 * (n - 1) / n),
    "lp": (lambda n: max(0.0, n - 1) ** 2, lambda n: 2 * max(0.0, n - 1) / n),
    "r1": (lambda n: n * n / 2, lambda n: 1.0),
}


def _eps(n: int, seed: int) -> torch.Tensor:
    return interpolation_eps(n, 1, torch.Generator().manual_seed(seed)).double()[None]


# ------------------------------------------------------------------ every penalty, closed form
@pytest.mark.parametrize("w", WS)
@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_penalty_of_a_linear_critic_and_its_gradient_have_the_closed_form(name, w) -> None:
    value, slope = CLOSED_FORM[name]
    critic = linear_critic(w)
    real, fake = pair(32, len(w))
    weight = 2.5
    got = make_penalty(name, weight)(critic, real, fake, _eps(32, 1))
    n = math.sqrt(sum(v * v for v in w))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(weight * value(n), abs=1e-12)
    got.sum().backward()  # the penalty reaches the critic's weights (create_graph)
    expected = weight * slope(n) * torch.tensor(w, dtype=torch.float64)
    torch.testing.assert_close(critic.weight.grad[0], expected, rtol=0, atol=1e-12)
    assert critic.bias.grad is None or critic.bias.grad.abs().item() < 1e-12


def test_one_sided_penalty_leaves_a_flatter_critic_alone_and_matches_two_sided_above_one():
    real, fake = pair(16, 2)
    eps = _eps(16, 0)
    flat, steep = linear_critic([0.3, 0.4]), linear_critic([3.0, 4.0])
    assert OneSidedLP(1.0)(flat, real, fake, eps).item() == 0.0
    assert TwoSidedGP(1.0)(flat, real, fake, eps).item() == pytest.approx(0.25)
    assert OneSidedLP(1.0)(steep, real, fake, eps).item() == pytest.approx(
        TwoSidedGP(1.0)(steep, real, fake, eps).item(), abs=1e-12)


def test_r1_looks_at_real_data_only() -> None:
    # c(x) = 0.5 |x|^2 has gradient x: R1 is E|x_real|^2 / 2, whatever the fakes are.
    class Half(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * (x**2).flatten(2).sum(2, keepdim=True)

    real, fake = pair(50, 3)
    expected = 0.5 * (real**2).sum(-1).mean()
    assert R1(1.0)(Half(), real, fake).item() == pytest.approx(expected.item(), rel=1e-12)
    assert R1(1.0)(Half(), real, fake * 100).item() == pytest.approx(expected.item(), rel=1e-12)


def test_interpolating_penalties_need_the_eps() -> None:
    real, fake = pair(4, 2)
    for name, cls in PENALTIES.items():
        if cls.needs_interpolates:
            with pytest.raises(ValueError, match="eps"):
                make_penalty(name, 1.0)(linear_critic([1.0, 0.0]), real, fake)


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_per_member_weights(name) -> None:
    # K = 3 linear critics w_j with weights gamma_j: member j's penalty is gamma_j * f(|w_j|).
    w, critic, real, fake, eps = linear_population()
    weights = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)
    got = make_penalty(name, weights)(critic, real, fake, eps)
    value = CLOSED_FORM[name][0]
    want = [float(weights[j]) * value(w[j].norm().item()) for j in range(3)]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12)


# --------------------------------------------------------------------- the registry's contract
@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_every_registered_penalty_keeps_the_registry_contract(name) -> None:
    cls = PENALTIES[name]
    assert cls.title and cls.source  # shown in --help and the README
    for loss in ("wgan", "bce-ns", "bce", "wgan-clip"):  # any loss without a built-in penalty
        cfg = make_config({"loss": loss, "penalty": name, "penalty_weight": 0.5})
        assert (cfg.penalty, cfg.penalty_weight) == (name, 0.5)
    assert make_penalty("none", 1.0) is None


def test_wgan_gp_with_a_second_penalty_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="loss wgan-gp has its gradient penalty built in; use "
                                          "loss wgan with penalty lp"):
        make_config({"loss": "wgan-gp", "penalty": "lp"})


# -------------------------------------------------------------- the gradient norm itself
@pytest.mark.parametrize("w", [[3.0, 4.0], [0.6, 0.8], [0.1, -0.2], [0.0, 0.0], [1.0, 2.0, 2.0]])
def test_gradient_penalty_of_linear_critic_is_norm_minus_one_squared(w: list[float]) -> None:
    critic = linear_critic(w)
    real, fake = pair(64, len(w))
    gp = gradient_penalty(critic, x_hat_of(real, fake, 1))
    assert gp.shape == (1,)
    norm = math.sqrt(sum(v * v for v in w))
    assert gp.item() == pytest.approx((norm - 1) ** 2, abs=1e-12)


def test_gradient_penalty_reaches_critic_weights() -> None:
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||; needs create_graph=True in the penalty
    w = torch.tensor([3.0, 4.0], dtype=torch.float64)
    critic = linear_critic(w.tolist())
    real, fake = pair(16, 2)
    gradient_penalty(critic, x_hat_of(real, fake, 0)).sum().backward()
    expected = 2 * (5.0 - 1.0) * w / 5.0
    torch.testing.assert_close(critic.weight.grad[0], expected, rtol=0, atol=1e-12)
    assert critic.bias.grad is None or critic.bias.grad.abs().item() < 1e-12


def test_gradient_penalty_flattens_each_sample_of_4d_inputs() -> None:
    # A linear critic on flattened 3x4x4 images has gradient w (reshaped) everywhere, so the
    # penalty is (||w|| - 1)^2 only if the norm runs over all of C, H and W per sample (a norm
    # over dim 1 alone, a bug of several ports, gives a different number).
    g = torch.Generator().manual_seed(0)
    critic = nn.Sequential(nn.Flatten(2), nn.Linear(3 * 4 * 4, 1)).double()
    with torch.no_grad():
        critic[1].weight.copy_(torch.randn(1, 48, generator=g, dtype=torch.float64) * 0.5)
    norm = critic[1].weight.norm().item()
    real, fake = pair(8, 3, 4, 4)
    gp = gradient_penalty(critic, x_hat_of(real, fake, 2))
    assert gp.item() == pytest.approx((norm - 1) ** 2, abs=1e-12)
    norms = critic_grad_norms(critic, real)
    assert norms.shape == (1, 8)
    torch.testing.assert_close(norms, torch.full((1, 8), norm, dtype=torch.float64))


def test_critic_grad_norms_of_a_quadratic_critic() -> None:
    # c(x) = 0.5 |x|^2 has gradient x, so the per-sample norm is |x|
    class Half(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * (x**2).flatten(2).sum(2, keepdim=True)

    real, _ = pair(10, 2, 3)
    torch.testing.assert_close(critic_grad_norms(Half(), real), real.flatten(2).norm(dim=2))


