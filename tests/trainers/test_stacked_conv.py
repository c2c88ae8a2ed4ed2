"""Stacked conv models (trainers/stacked_conv.py): K fused members equal K separate ones."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from trainers.models import ConvGenerator, conv_critic
from trainers.stacked_conv import StackedConvCritic, StackedConvGenerator

K, B, Z = 3, 5, 6
SHAPES = [((1, 8, 8), 4), ((3, 8, 8), 6), ((1, 8, 12), 5)]  # the last one is not square


pytestmark = pytest.mark.usefixtures("one_thread")


def generators(shape, hidden) -> list[ConvGenerator]:
    out = []
    for seed in range(K):
        torch.manual_seed(seed)
        g = ConvGenerator(Z, shape, hidden)
        with torch.no_grad():  # BN affine parameters away from their 1 / 0 defaults
            for bn in (g.project[1], g.up[1]):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)
        out.append(g)
    return out


def critics(shape, hidden) -> list[nn.Sequential]:
    out = []
    for seed in range(K):
        torch.manual_seed(10 + seed)
        d = conv_critic(shape, hidden)
        with torch.no_grad():
            d[3].weight.uniform_(0.5, 1.5)
            d[3].bias.uniform_(-0.5, 0.5)
        out.append(d)
    return out


def close(a: Tensor, b: Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def assert_grads_match(stacked, members) -> None:
    """Every stacked parameter's gradient, read back in member j's layout, is member j's."""
    grads = copy.deepcopy(stacked)
    with torch.no_grad():
        for g, p in zip(grads.parameters(), stacked.parameters(), strict=True):
            assert p.grad is not None
            g.copy_(p.grad)
    for j, m in enumerate(members):
        mine = grads.member_state_dict(j)
        for name, p in m.named_parameters():
            close(mine[name], p.grad)


@pytest.mark.parametrize("shape,hidden", SHAPES)
@pytest.mark.parametrize("train", [True, False])
def test_generator_forward_and_running_stats_match_members(shape, hidden, train):
    members = generators(shape, hidden)
    G = StackedConvGenerator.stack(members)
    torch.manual_seed(99)
    for _ in range(2):  # non-trivial running statistics before an eval-mode pass
        z = torch.randn(K, B, Z)
        close(G(z), torch.stack([m(z[j]) for j, m in enumerate(members)]))
    for net in (G, *members):
        net.train(train)
    z = torch.randn(K, B, Z)
    out = G(z)
    assert out.shape == (K, B, *shape)
    close(out, torch.stack([m(z[j]) for j, m in enumerate(members)]))
    for j, m in enumerate(members):
        mine = G.member_state_dict(j)
        assert mine.keys() == m.state_dict().keys()
        for key, want in m.state_dict().items():
            close(mine[key], want)
        assert mine["up.1.num_batches_tracked"] == (3 if train else 2)


@pytest.mark.parametrize("shape,hidden", SHAPES)
def test_generator_gradients_match_members(shape, hidden):
    members = generators(shape, hidden)
    G = StackedConvGenerator.stack(members)
    z, target = torch.randn(K, B, Z), torch.randn(K, B, *shape)
    (G(z) * target).sum().backward()
    sum((m(z[j]) * target[j]).sum() for j, m in enumerate(members)).backward()
    assert_grads_match(G, members)


@pytest.mark.parametrize("shape,hidden", SHAPES)
def test_critic_forward_matches_members(shape, hidden):
    members = critics(shape, hidden)
    D = StackedConvCritic.stack(members)
    x = torch.randn(K, B, *shape)
    out = D(x)
    assert out.shape == (K, B, 1)
    close(out, torch.stack([m(x[j]) for j, m in enumerate(members)]))


def gp_loss(D, real: Tensor, x_hat: Tensor, dims: tuple[int, ...]) -> Tensor:
    """A WGAN-GP-style loss: mean score plus the double-backward gradient penalty."""
    x_hat = x_hat.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    norms = grad.flatten(-3).norm(2, dim=-1)  # per sample, over (C, H, W)
    return (D(real).mean(dims) + 2.0 * ((norms - 1) ** 2).mean(-1)).sum()


@pytest.mark.parametrize("shape,hidden", SHAPES)
def test_critic_gradients_match_members_with_gradient_penalty(shape, hidden):
    members = critics(shape, hidden)
    D = StackedConvCritic.stack(members)
    real, x_hat = torch.randn(K, B, *shape), torch.randn(K, B, *shape)
    gp_loss(D, real, x_hat, (1, 2)).backward()
    sum(gp_loss(m, real[j], x_hat[j], (0, 1)) for j, m in enumerate(members)).backward()
    assert_grads_match(D, members)


@pytest.mark.parametrize("shape,hidden", SHAPES)
def test_member_state_dict_round_trips(shape, hidden):
    G = StackedConvGenerator.stack(generators(shape, hidden))
    D = StackedConvCritic.stack(critics(shape, hidden))
    z, x = torch.randn(K, B, Z), torch.randn(K, B, *shape)
    G(z)  # running statistics away from their initial values
    G.eval()
    fresh_g, fresh_d = [], []
    for j in range(K):
        g, d = ConvGenerator(Z, shape, hidden), conv_critic(shape, hidden)
        g.load_state_dict(G.member_state_dict(j))
        d.load_state_dict(D.member_state_dict(j))
        g.eval()
        close(g(z[j]), G(z)[j])
        close(d(x[j]), D(x)[j])
        fresh_g.append(g)
        fresh_d.append(d)
    for stacked, again in ((G, StackedConvGenerator.stack(fresh_g)),
                           (D, StackedConvCritic.stack(fresh_d))):
        a, b = stacked.state_dict(), again.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_stack_rejects_members_of_another_shape():
    members = critics((1, 8, 8), 4)
    members[1] = conv_critic((1, 8, 8), 5)
    with pytest.raises(ValueError, match="member 1"):
        StackedConvCritic.stack(members)


def test_every_parameter_and_buffer_is_per_member():
    shape, hidden = SHAPES[1]
    for net in (StackedConvGenerator.stack(generators(shape, hidden)),
                StackedConvCritic.stack(critics(shape, hidden))):
        tensors = [*net.named_parameters(), *net.named_buffers()]
        assert tensors
        for name, t in tensors:
            assert t.shape[0] == K, name
