"""Generator and critic networks, chosen by the dataset's kind ("points" or "image").

The critic never ends in a sigmoid: BCE losses apply it inside the loss (on logits, which is
numerically stable) and Wasserstein losses need an unbounded critic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from trainers.config import TrialConfig
    from trainers.data import Dataset


def mlp(n_in: int, n_out: int, hidden: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _points_models(cfg: TrialConfig, data: Dataset) -> tuple[nn.Module, nn.Module]:
    # No batch norm anywhere: the gradient penalty is per sample, which batch norm would break
    # (Gulrajani et al. 2017, sec. 4), and the 2D toy code of WGAN-GP uses plain ReLU MLPs.
    (dim,) = data.shape
    return mlp(cfg.z_dim, dim, cfg.hidden, cfg.depth), mlp(dim, 1, cfg.hidden, cfg.depth)


MODEL_FAMILIES: dict[str, Callable[[TrialConfig, Dataset], tuple[nn.Module, nn.Module]]] = {
    "points": _points_models,
}


def build_models(cfg: TrialConfig, data: Dataset) -> tuple[nn.Module, nn.Module]:
    """(generator, critic) for the dataset's kind; G maps (n, z_dim) noise to samples."""
    return MODEL_FAMILIES[data.kind](cfg, data)
