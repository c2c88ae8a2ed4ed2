"""Generator and critic networks, chosen by the dataset's kind ("points" or "image").

The critic never ends in a sigmoid: BCE losses apply it inside the loss (on logits, which is
numerically stable) and Wasserstein losses need an unbounded critic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:
    from trainers.config import TrialConfig
    from trainers.data import Dataset


# MLP activations (2D data), by config name. GDPP's and VEEGAN's toy networks use tanh; the
# WGAN-GP toy code uses ReLU.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _orthogonal(layer: nn.Linear) -> None:
    # GDPP's toy code: TensorFlow's orthogonal initializer, zero biases (TF's dense default).
    nn.init.orthogonal_(layer.weight)
    nn.init.zeros_(layer.bias)


# MLP weight initialisations, by config name; "default" keeps PyTorch's (Kaiming-uniform).
INITS: dict[str, Callable[[nn.Linear], None]] = {"default": lambda layer: None,
                                                  "orthogonal": _orthogonal}


def mlp(n_in: int, n_out: int, hidden: int, depth: int, activation: str = "relu",
        init: str = "default") -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            INITS[init](layer)
    return nn.Sequential(*layers)


def _points_models(cfg: TrialConfig, data: Dataset) -> tuple[nn.Module, nn.Module]:
    # No batch norm anywhere: the gradient penalty is per sample, which batch norm would break
    # (Gulrajani et al. 2017, sec. 4), and the 2D toy code of WGAN-GP uses plain ReLU MLPs.
    (dim,) = data.shape
    shape = {"hidden": cfg.hidden, "depth": cfg.depth, "activation": cfg.activation,
             "init": cfg.init}
    return mlp(cfg.z_dim, dim, **shape), mlp(dim, 1, **shape)


class ConvGenerator(nn.Module):
    """DCGAN-style generator (Radford et al. 2015, arXiv 1511.06434) for C x H x W images.

    z is projected to a (2h, H/4, W/4) map, then two stride-2 transposed convolutions double the
    size twice (2h -> h -> C channels), ending in tanh because the data lie in [-1, 1]. Batch
    norm and ReLU follow every hidden layer, as in DCGAN. The trainer samples in eval mode, so
    evaluation uses the running batch-norm statistics, not those of the evaluation batch.
    """

    def __init__(self, z_dim: int, shape: tuple[int, int, int], hidden: int) -> None:
        super().__init__()
        c, h, w = _check_image_shape(shape)
        self.start = (2 * hidden, h // 4, w // 4)
        self.project = nn.Sequential(
            nn.Linear(z_dim, 2 * hidden * (h // 4) * (w // 4), bias=False),
            nn.BatchNorm1d(2 * hidden * (h // 4) * (w // 4)), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * hidden, hidden, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.ConvTranspose2d(hidden, c, 4, stride=2, padding=1), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.up(self.project(z).view(len(z), *self.start))


def conv_critic(shape: tuple[int, int, int], hidden: int) -> nn.Sequential:
    """DCGAN-style critic: two stride-2 convolutions (C -> h -> 2h), LeakyReLU(0.2), linear.

    No batch norm: it couples the samples of a batch, which breaks the per-sample gradient
    penalty; Gulrajani et al. 2017 (arXiv 1704.00028, sec. 4) recommend layer normalization
    instead. GroupNorm with one group is layer norm over (channels, height, width) with a
    per-channel affine; as in DCGAN the first layer is not normalised.
    """
    c, h, w = _check_image_shape(shape)
    return nn.Sequential(
        nn.Conv2d(c, hidden, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(hidden, 2 * hidden, 4, stride=2, padding=1), nn.GroupNorm(1, 2 * hidden),
        nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(2 * hidden * (h // 4) * (w // 4), 1))


def _check_image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    c, h, w = shape
    if h % 4 or w % 4:
        raise ValueError(f"conv models need height and width divisible by 4, got {h}x{w}")
    return c, h, w


def _image_models(cfg: TrialConfig, data: Dataset) -> tuple[nn.Module, nn.Module]:
    # hidden is the base channel count h: G uses 2h and h channels, the critic h and 2h.
    shape = tuple(data.shape)
    return ConvGenerator(cfg.z_dim, shape, cfg.hidden), conv_critic(shape, cfg.hidden)


MODEL_FAMILIES: dict[str, Callable[[TrialConfig, Dataset], tuple[nn.Module, nn.Module]]] = {
    "points": _points_models,
    "image": _image_models,
}


def build_models(cfg: TrialConfig, data: Dataset) -> tuple[nn.Module, nn.Module]:
    """(generator, critic) for the dataset's kind; G maps (n, z_dim) noise to samples."""
    return MODEL_FAMILIES[data.kind](cfg, data)
