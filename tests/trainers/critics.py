"""Small critics and batches with known gradients, shared by the loss and penalty tests."""

from __future__ import annotations

import torch
from torch import nn

from trainers.penalties import interpolate, interpolation_eps


def linear_critic(w: list[float], b: float = 0.3) -> nn.Linear:
    critic = nn.Linear(len(w), 1).double()
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([w], dtype=torch.float64))
        critic.bias.fill_(b)
    return critic


def pair(n: int, *shape: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One member's [1, n, *shape] real and fake batches."""
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(1, n, *shape, generator=g, dtype=torch.float64)
    fake = torch.randn(1, n, *shape, generator=g, dtype=torch.float64) + 2
    return real, fake


def x_hat_of(real: torch.Tensor, fake: torch.Tensor, seed: int) -> torch.Tensor:
    eps = interpolation_eps(real.shape[1], real.dim() - 2, torch.Generator().manual_seed(seed))
    return interpolate(real, fake, eps.double()[None])
