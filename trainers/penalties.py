"""The Lipschitz-penalty family: a critic regulariser chosen apart from the loss.

`PENALTIES` is the one registry, name -> class (`none` is no penalty). Each penalty is a
term `weight * value(...)` added to the critic loss of any loss, Wasserstein or BCE; the
weight is the config's `penalty_weight`, per member. Adding a penalty is one class here,
listed once in `PENALTIES`, and its closed-form test in tests/trainers/test_penalties.py.

Shapes are a population's, as in `trainers.losses`: samples [K, B, ...], values [K].
For a linear critic c(x) = w.x + b the gradient is w at every point, so each value has a
closed form in ||w||: (||w|| - 1)^2, max(0, ||w|| - 1)^2 and ||w||^2 / 2.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn


def critic_grad_norms(critic: nn.Module, x: Tensor, *, create_graph: bool = False) -> Tensor:
    """Per-sample ||grad_x c(x)||_2 [K, B], the gradient flattened per sample (images too).

    Members and samples are independent, so the gradient of the sum of all outputs holds each
    sample's own gradient. With create_graph the norm stays differentiable, so a penalty on it
    reaches the critic's weights."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=create_graph)
    return grad.flatten(2).norm(2, dim=2)


def interpolation_eps(n: int, sample_dims: int, generator: torch.Generator,
                      device: torch.device | str = "cpu") -> Tensor:
    """One eps ~ U[0, 1] per sample, [n, 1, ...] so that it broadcasts over the sample."""
    return torch.rand((n,) + (1,) * sample_dims, generator=generator, device=device)


def interpolate(real: Tensor, fake: Tensor, eps: Tensor) -> Tensor:
    """x_hat = eps * x + (1 - eps) * G(z): points on the segments between real and fake."""
    return eps * real + (1 - eps) * fake


def gradient_penalty(critic: nn.Module, x_hat: Tensor) -> Tensor:
    """E[(||grad c(x_hat)||_2 - 1)^2] per member [K] (Gulrajani et al. 2017, eq. 3)."""
    return ((critic_grad_norms(critic, x_hat, create_graph=True) - 1) ** 2).mean(1)


class Penalty(ABC):
    """Interface: `value` per member [K], unweighted; calling it applies the weight."""

    title: ClassVar[str] = ""
    source: ClassVar[str] = ""
    # The value is taken at random interpolates x_hat (one eps per sample, drawn by the
    # trainer from each member's own stream, in the same place as WGAN-GP's).
    needs_interpolates: ClassVar[bool] = False

    def __init__(self, weight: Tensor | float) -> None:
        self.weight = weight

    @abstractmethod
    def value(self, critic: nn.Module, real: Tensor, fake: Tensor,
              eps: Tensor | None) -> Tensor:
        """The unweighted penalty per member [K]."""

    def __call__(self, critic: nn.Module, real: Tensor, fake: Tensor,
                 eps: Tensor | None = None) -> Tensor:
        if self.needs_interpolates and eps is None:
            raise ValueError(f"the {self.title} penalty needs the interpolation eps")
        return self.weight * self.value(critic, real, fake, eps)


class TwoSidedGP(Penalty):
    """(||grad c(x_hat)||_2 - 1)^2: pulls the gradient norm to 1 from both sides."""

    title = "two-sided gradient penalty"
    source = "Gulrajani et al. 2017"
    needs_interpolates = True

    def value(self, critic, real, fake, eps):
        return gradient_penalty(critic, interpolate(real, fake, eps))


class OneSidedLP(Penalty):
    """max(0, ||grad c(x_hat)||_2 - 1)^2: penalises only a norm above 1, which is what
    1-Lipschitz requires; a flatter critic is left alone."""

    title = "one-sided Lipschitz penalty"
    source = "Petzka et al. 2018"
    needs_interpolates = True

    def value(self, critic, real, fake, eps):
        norms = critic_grad_norms(critic, interpolate(real, fake, eps), create_graph=True)
        return (torch.relu(norms - 1) ** 2).mean(1)


class R1(Penalty):
    """gamma/2 * ||grad c(x)||^2 on real data only: zero-centred, so at equilibrium the
    critic is flat on the data (the weight is gamma)."""

    title = "R1, zero-centred on real data"
    source = "Mescheder et al. 2018"

    def value(self, critic, real, fake, eps):
        return 0.5 * (critic_grad_norms(critic, real, create_graph=True) ** 2).mean(1)


NONE = "none"
PENALTIES: dict[str, type[Penalty]] = {
    "gp": TwoSidedGP,
    "lp": OneSidedLP,
    "r1": R1,
}
# The config field every penalty reads; it means nothing without one.
WEIGHT_FIELD = "penalty_weight"


def make_penalty(name: str, weight: Tensor | float) -> Penalty | None:
    """The penalty `name` with its per-member weight; None for `none`."""
    return None if name == NONE else PENALTIES[name](weight)
