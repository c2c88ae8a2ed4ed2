"""The GAN losses as small strategy objects (the penalty family is in `trainers.penalties`).

`LOSSES` is the one registry of losses, name -> class: each class carries the config fields it
reads beyond the shared ones (`uses`), and its reference optimiser settings with their source
(`defaults`, `source`), from which `trainers.config` derives the loss choices, the defaults
and which params a setting's loss makes meaningful (`config.applies`). Adding a loss is one class
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

from trainers.penalties import TwoSidedGP


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


# WGAN-GP, Gulrajani et al. 2017 (arXiv 1704.00028): Adam 1e-4, n_critic 5; betas (0.5, 0.9)
# as in its released MNIST/CIFAR/toy code (the paper says (0, 0.9)).
_WGAN_GP_OPTIMISER = {"optimizer": "adam", "lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.5,
                      "beta2": 0.9, "n_critic": 5}


class WGAN(Loss):
    """The Wasserstein critic loss with no constraint of its own: meant for a penalty
    (`--penalty gp|lp|r1`); without one the critic is unbounded and the run diverges."""

    wasserstein = True
    # WGAN-GP's optimiser settings: the penalties this loss is for were published with them.
    defaults = _WGAN_GP_OPTIMISER
    source = "Gulrajani et al. 2017 (code), without the penalty"
    title = "WGAN, no constraint: use with --penalty"

    def critic_loss(self, critic, real, fake, eps=None):
        return _mean(critic(fake)) - _mean(critic(real))

    def generator_loss(self, fake_scores):
        return -_mean(fake_scores)


class WGANClip(WGAN):
    """Arjovsky et al. 2017: critic maximises E[c(x)] - E[c(G(z))]; weights clamped to [-c, c]
    after every critic step to keep it (crudely) Lipschitz. c is per member."""

    uses = ("clip_value",)
    # WGAN, Arjovsky et al. 2017 (arXiv 1701.07875), Algorithm 1: RMSProp 5e-5, c = 0.01, 5.
    defaults = {"optimizer": "rmsprop", "lr_g": 5e-5, "lr_d": 5e-5, "clip_value": 0.01,
                "n_critic": 5}
    source = "Arjovsky et al. 2017"
    title = "WGAN, weight clipping"

    def __init__(self, clip_value: Tensor | float) -> None:
        self.clip_value = clip_value

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


class WGANGP(WGAN):
    """Gulrajani et al. 2017: E[c(G(z))] - E[c(x)] + lambda * E[(||grad c(x_hat)|| - 1)^2].

    The Wasserstein loss with the two-sided penalty (`trainers.penalties`) built in, its weight
    named gp_lambda: kept as a loss so that `wgan-gp` in configs, exported YAMLs and sweeps
    means what it always meant; `--loss wgan --penalty gp` trains the very same run."""

    needs_interpolates = True
    uses = ("gp_lambda",)
    defaults = {**_WGAN_GP_OPTIMISER, "gp_lambda": 10.0}  # lambda 10, as published
    source = "Gulrajani et al. 2017 (code)"
    title = "WGAN-GP"

    def __init__(self, gp_lambda: Tensor | float) -> None:
        self.gp_lambda = gp_lambda
        self._penalty = TwoSidedGP(gp_lambda)

    def critic_loss(self, critic, real, fake, eps=None):
        return super().critic_loss(critic, real, fake) + self._penalty(critic, real, fake, eps)


LOSSES: dict[str, type[Loss]] = {
    "bce": BCEMinimax,
    "bce-ns": BCENonSaturating,
    "wgan-clip": WGANClip,
    "wgan-gp": WGANGP,
    "wgan": WGAN,
}


def make_loss(name: str, **values: Tensor | float) -> Loss:
    """The loss `name`, given (at least) the values of the fields it uses, per member."""
    cls = LOSSES[name]
    return cls(*(values[f] for f in cls.uses))

