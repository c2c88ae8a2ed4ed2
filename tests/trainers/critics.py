"""Small critics and batches with known gradients, shared by the loss and penalty tests."""

from __future__ import annotations

import torch
from torch import nn

from trainers.batched import StackedMLP
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


def linear_population() -> tuple[torch.Tensor, StackedMLP, torch.Tensor, torch.Tensor,
                                  torch.Tensor]:
    """K = 3 linear critics w_j (norms 5, 1 and 1) as one population, with [3, 16, 2] real
    and fake batches and one eps per sample: (w, critic, real, fake, eps)."""
    w = torch.tensor([[3.0, 4.0], [0.6, 0.8], [1.0, 0.0]], dtype=torch.float64)
    critic = StackedMLP([w[:, :, None]], [torch.zeros(3, 1, 1, dtype=torch.float64)])
    g = torch.Generator().manual_seed(0)
    real = torch.randn(3, 16, 2, generator=g, dtype=torch.float64)
    fake = torch.randn(3, 16, 2, generator=g, dtype=torch.float64)
    eps = torch.rand(3, 16, 1, generator=g, dtype=torch.float64)
    return w, critic, real, fake, eps
