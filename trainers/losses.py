"""The four GAN losses as small strategy objects, and the WGAN-GP gradient penalty.

`LOSSES` is the one registry of losses, name -> class: each class carries the config fields it
reads beyond the shared ones (`uses`), and its reference optimiser settings with their source
(`defaults`, `source`), from which `trainers.config` derives the loss choices and defaults and
`sweeper.stability` which params a setting's loss makes meaningful. Adding a loss is one class
here, listed once in `LOSSES`, and its test.

Every tensor is a population's: [K, B, ...] with the member first (a single run is K = 1),
and every loss is per member, shape [K]; the trainer sums them, so each member's gradient is
its own. Per-member constants (lambda, clip value) are [K] tensors, or floats shared by all.

Each loss turns critic outputs into a critic loss and a generator loss, and may constrain the
critic after its optimiser step (weight clipping). The training loop never branches on the
loss name. For BCE losses the "critic" returns the discriminator's logit: D(x) = sigmoid(c(x)).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def interpolation_eps(n: int, sample_dims: int, generator: torch.Generator,
                      device: torch.device | str = "cpu") -> Tensor:
    """One eps ~ U[0, 1] per sample, [n, 1, ...] so that it broadcasts over the sample."""
    return torch.rand((n,) + (1,) * sample_dims, generator=generator, device=device)


def interpolate(real: Tensor, fake: Tensor, eps: Tensor) -> Tensor:
    """x_hat = eps * x + (1 - eps) * G(z): points on the segments between real and fake."""
    return eps * real + (1 - eps) * fake


def critic_grad_norms(critic: nn.Module, x: Tensor, *, create_graph: bool = False) -> Tensor:
    """Per-sample ||grad_x c(x)||_2 [K, B], the gradient flattened per sample (images too).

    Members and samples are independent, so the gradient of the sum of all outputs holds each
    sample's own gradient."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=create_graph)
    return grad.flatten(2).norm(2, dim=2)


def gradient_penalty(critic: nn.Module, x_hat: Tensor) -> Tensor:
    """E[(||grad c(x_hat)||_2 - 1)^2] per member [K] (Gulrajani et al. 2017, eq. 3).

    The graph is kept (create_graph) so the penalty's gradient reaches the critic's weights.
    For a linear critic c(x) = w.x + b the gradient is w everywhere, so the penalty is
    exactly (||w|| - 1)^2.
    """
    norms = critic_grad_norms(critic, x_hat, create_graph=True)
    return ((norms - 1) ** 2).mean(1)


def _mean(scores: Tensor) -> Tensor:
    """Per-member mean over a [K, B, ...] batch of scores."""
    return scores.flatten(1).mean(1)


def _per_member(value: Tensor | float, like: Tensor) -> Tensor | float:
    """A [K] constant shaped to broadcast against a [K, ...] tensor."""
    if isinstance(value, Tensor):
        return value.view((-1,) + (1,) * (like.dim() - 1))
    return value


class Loss(ABC):
    """Interface: critic_loss, generator_loss and an after_critic_step hook.

    The constructor takes the per-member values of the `uses` fields, in that order."""

    # Config fields this loss reads beside the shared ones (n_critic, learning rates...).
    uses: ClassVar[tuple[str, ...]] = ()
    # The reference optimiser settings that `make_config` fills in, and where they come from.
    defaults: ClassVar[dict[str, Any]] = {}
    source: ClassVar[str] = ""
    title: ClassVar[str] = ""  # a few words for `--help`
    wasserstein = False
    # The critic loss needs random interpolates (one eps per sample, drawn by the trainer
    # from each member's own stream).
    needs_interpolates = False

    @abstractmethod
    def critic_loss(self, critic: nn.Module, real: Tensor, fake: Tensor,
                    eps: Tensor | None = None) -> Tensor:
        """Per-member loss [K] the critic minimises, given real samples and detached fakes."""

    @abstractmethod
    def generator_loss(self, fake_scores: Tensor) -> Tensor:
        """Per-member loss [K] the generator minimises, given the scores of fresh fakes."""

    def after_critic_step(self, critic: nn.Module) -> None:
        """Constrain the critic after each of its optimiser steps; most losses do nothing."""
        return None


class BCEMinimax(Loss):
    """Goodfellow et al. 2014: D maximises log D(x) + log(1 - D(G(z))); G minimises
    log(1 - D(G(z))), whose gradient vanishes when D confidently rejects fakes."""

    # Goodfellow et al. 2014 train D and G alternately (k = 1); Adam 2e-4, beta1 0.5 is
    # DCGAN's setting (Radford et al. 2015), the usual default for BCE GANs.
    defaults = {"optimizer": "adam", "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999,
                "n_critic": 1}
    source = "Goodfellow et al. 2014; DCGAN"
    title = "BCE minimax"

    def critic_loss(self, critic, real, fake, eps=None):
        # -log D(x) = softplus(-c(x)); -log(1 - D(G(z))) = softplus(c(G(z)))
        return _mean(F.softplus(-critic(real))) + _mean(F.softplus(critic(fake)))

    def generator_loss(self, fake_scores):
        return -_mean(F.softplus(fake_scores))  # log(1 - sigmoid(s)) = -softplus(s)


class BCENonSaturating(BCEMinimax):
    """Same discriminator; G maximises log D(G(z)) instead (the 'non-saturating' trick)."""

    title = "BCE non-saturating"

    def generator_loss(self, fake_scores):
        return _mean(F.softplus(-fake_scores))  # -log sigmoid(s) = softplus(-s)


class WGANClip(Loss):
    """Arjovsky et al. 2017: critic maximises E[c(x)] - E[c(G(z))]; weights clamped to [-c, c]
    after every critic step to keep it (crudely) Lipschitz. c is per member."""

    wasserstein = True
    uses = ("clip_value",)
    # WGAN, Arjovsky et al. 2017 (arXiv 1701.07875), Algorithm 1: RMSProp 5e-5, c = 0.01, 5.
    defaults = {"optimizer": "rmsprop", "lr_g": 5e-5, "lr_d": 5e-5, "clip_value": 0.01,
                "n_critic": 5}
    source = "Arjovsky et al. 2017"
    title = "WGAN, weight clipping"

    def __init__(self, clip_value: Tensor | float) -> None:
        self.clip_value = clip_value

    def critic_loss(self, critic, real, fake, eps=None):
        return _mean(critic(fake)) - _mean(critic(real))

    def generator_loss(self, fake_scores):
        return -_mean(fake_scores)

    @torch.no_grad()
    def after_critic_step(self, critic):
        # Clamping is idempotent, so a frozen (diverged) member's weights, clipped before it
        # froze, stay exactly as they are.
        for p in critic.parameters():
            c = _per_member(self.clip_value, p)
            if isinstance(c, Tensor):
                torch.minimum(p, c, out=p)
                torch.maximum(p, -c, out=p)
            else:
                p.clamp_(-c, c)


class WGANGP(WGANClip):
    """Gulrajani et al. 2017: E[c(G(z))] - E[c(x)] + lambda * gradient_penalty; no clipping."""

    needs_interpolates = True
    uses = ("gp_lambda",)
    # WGAN-GP, Gulrajani et al. 2017 (arXiv 1704.00028): Adam 1e-4, lambda 10, n_critic 5;
    # betas (0.5, 0.9) as in its released MNIST/CIFAR/toy code (the paper says (0, 0.9)).
    defaults = {"optimizer": "adam", "lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.5, "beta2": 0.9,
                "gp_lambda": 10.0, "n_critic": 5}
    source = "Gulrajani et al. 2017 (code)"
    title = "WGAN-GP"

    def __init__(self, gp_lambda: Tensor | float) -> None:
        self.gp_lambda = gp_lambda

    def critic_loss(self, critic, real, fake, eps=None):
        if eps is None:
            raise ValueError("WGAN-GP's critic loss needs the interpolation eps")
        wgan = _mean(critic(fake)) - _mean(critic(real))
        return wgan + self.gp_lambda * gradient_penalty(critic, interpolate(real, fake, eps))

    def after_critic_step(self, critic):
        pass


LOSSES: dict[str, type[Loss]] = {
    "bce": BCEMinimax,
    "bce-ns": BCENonSaturating,
    "wgan-clip": WGANClip,
    "wgan-gp": WGANGP,
}


def make_loss(name: str, **values: Tensor | float) -> Loss:
    """The loss `name`, given (at least) the values of the fields it uses, per member."""
    cls = LOSSES[name]
    return cls(*(values[f] for f in cls.uses))


def conditional_fields() -> dict[str, tuple[str, ...]]:
    """Each field some loss uses and others ignore -> the losses that use it."""
    out: dict[str, tuple[str, ...]] = {}
    for name, cls in LOSSES.items():
        for f in cls.uses:
            out[f] = out.get(f, ()) + (name,)
    return out
