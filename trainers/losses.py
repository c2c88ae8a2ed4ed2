"""The four GAN losses as small strategy objects, and the WGAN-GP gradient penalty.

Each loss turns critic outputs into a critic loss and a generator loss, and may constrain the
critic after its optimiser step (weight clipping). The training loop never branches on the
loss name. For BCE losses the "critic" returns the discriminator's logit: D(x) = sigmoid(c(x)).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def random_interpolates(real: Tensor, fake: Tensor,
                        generator: torch.Generator | None = None) -> Tensor:
    """x_hat = eps * x + (1 - eps) * G(z), with eps ~ U[0, 1] drawn once per sample."""
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, device=real.device, dtype=real.dtype, generator=generator)
    return eps * real + (1 - eps) * fake


def critic_grad_norms(critic: nn.Module, x: Tensor, *, create_graph: bool = False) -> Tensor:
    """Per-sample ||grad_x c(x)||_2, with the gradient flattened per sample (images too)."""
    x = x.detach().requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out),
                                  create_graph=create_graph)
    return grad.flatten(1).norm(2, dim=1)


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """E[(||grad c(x_hat)||_2 - 1)^2] at random interpolates (Gulrajani et al. 2017, eq. 3).

    `fake` must already be detached from the generator. The graph is kept (create_graph) so the
    penalty's gradient reaches the critic's weights. For a linear critic c(x) = w.x + b the
    gradient is w everywhere, so the penalty is exactly (||w|| - 1)^2.
    """
    x_hat = random_interpolates(real, fake, generator)
    norms = critic_grad_norms(critic, x_hat, create_graph=True)
    return ((norms - 1) ** 2).mean()


class Loss(ABC):
    """Interface: critic_loss, generator_loss and an after_critic_step hook."""

    wasserstein = False

    @abstractmethod
    def critic_loss(self, critic: nn.Module, real: Tensor, fake: Tensor,
                    generator: torch.Generator) -> Tensor:
        """Loss the critic minimises, given real samples and detached fakes."""

    @abstractmethod
    def generator_loss(self, fake_scores: Tensor) -> Tensor:
        """Loss the generator minimises, given the critic's scores of fresh fakes."""

    def after_critic_step(self, critic: nn.Module) -> None:
        """Constrain the critic after each of its optimiser steps; most losses do nothing."""
        return None


class BCEMinimax(Loss):
    """Goodfellow et al. 2014: D maximises log D(x) + log(1 - D(G(z))); G minimises
    log(1 - D(G(z))), whose gradient vanishes when D confidently rejects fakes."""

    def critic_loss(self, critic, real, fake, generator):
        # -log D(x) = softplus(-c(x)); -log(1 - D(G(z))) = softplus(c(G(z)))
        return F.softplus(-critic(real)).mean() + F.softplus(critic(fake)).mean()

    def generator_loss(self, fake_scores):
        return -F.softplus(fake_scores).mean()  # log(1 - sigmoid(s)) = -softplus(s)


class BCENonSaturating(BCEMinimax):
    """Same discriminator; G maximises log D(G(z)) instead (the 'non-saturating' trick)."""

    def generator_loss(self, fake_scores):
        return F.softplus(-fake_scores).mean()  # -log sigmoid(s) = softplus(-s)


class WGANClip(Loss):
    """Arjovsky et al. 2017: critic maximises E[c(x)] - E[c(G(z))]; weights clamped to [-c, c]
    after every critic step to keep it (crudely) Lipschitz."""

    wasserstein = True

    def __init__(self, clip_value: float) -> None:
        self.clip_value = clip_value

    def critic_loss(self, critic, real, fake, generator):
        return critic(fake).mean() - critic(real).mean()

    def generator_loss(self, fake_scores):
        return -fake_scores.mean()

    @torch.no_grad()
    def after_critic_step(self, critic):
        for p in critic.parameters():
            p.clamp_(-self.clip_value, self.clip_value)


class WGANGP(WGANClip):
    """Gulrajani et al. 2017: E[c(G(z))] - E[c(x)] + lambda * gradient_penalty; no clipping."""

    def __init__(self, gp_lambda: float) -> None:
        self.gp_lambda = gp_lambda

    def critic_loss(self, critic, real, fake, generator):
        wgan = critic(fake).mean() - critic(real).mean()
        return wgan + self.gp_lambda * gradient_penalty(critic, real, fake, generator)

    def after_critic_step(self, critic):
        pass


def make_loss(name: str, *, gp_lambda: float, clip_value: float) -> Loss:
    return {
        "bce": lambda: BCEMinimax(),
        "bce-ns": lambda: BCENonSaturating(),
        "wgan-clip": lambda: WGANClip(clip_value),
        "wgan-gp": lambda: WGANGP(gp_lambda),
    }[name]()
