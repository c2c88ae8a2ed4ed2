"""Generator and critic networks: the registry of models (`MODELS`), users' own networks
through the same call (`trainers/user_models.py`), and the built-in MLP and DCGAN nets.

The critic never ends in a sigmoid: BCE losses apply it inside the loss (on logits, which is
numerically stable) and Wasserstein losses need an unbounded critic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


def _points_models(cfg: TrialConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    # No batch norm anywhere: the gradient penalty is per sample, which batch norm would break
    # (Gulrajani et al. 2017, sec. 4), and the 2D toy code of WGAN-GP uses plain ReLU MLPs.
    (dim,) = shape
    shape = {"hidden": cfg.hidden, "depth": cfg.depth, "activation": cfg.activation,
             "init": cfg.init}
    return mlp(cfg.z_dim, dim, **shape), mlp(dim, 1, **shape)


def conv_depth(shape: tuple[int, ...]) -> int:
    """Stride-2 layers of the DCGAN nets for C x H x W images: two, then one more for as long as
    both sides stay even and above 4, so 32 x 32 starts from 4 x 4 with three and 64 x 64 with
    four (DCGAN's own 64 x 64 layout); 8 x 8 starts from 2 x 2 and 28 x 28 from 7 x 7 with two."""
    _, h, w = _check_image_shape(shape)
    depth = 2
    while all(side >> depth > 4 and (side >> depth) % 2 == 0 for side in (h, w)):
        depth += 1
    return depth


class ConvGenerator(nn.Module):
    """DCGAN-style generator (Radford et al. 2015, arXiv 1511.06434) for C x H x W images.

    z is projected to a (2^(d-1) h, H/2^d, W/2^d) map, then d = `conv_depth(shape)` stride-2
    transposed convolutions double the size and halve the channels (... -> 2h -> h -> C),
    ending in tanh because the data lie in [-1, 1]. Batch norm and ReLU follow every hidden
    layer, as in DCGAN. The trainer samples in eval mode, so evaluation uses the running
    batch-norm statistics, not those of the evaluation batch.
    """

    def __init__(self, z_dim: int, shape: tuple[int, int, int], hidden: int) -> None:
        super().__init__()
        c, h, w = _check_image_shape(shape)
        d = conv_depth(shape)
        widths = [hidden << i for i in range(d - 1, -1, -1)]  # 2^(d-1) h, ..., 2h, h
        self.start = (widths[0], h >> d, w >> d)
        n_project = widths[0] * self.start[1] * self.start[2]
        self.project = nn.Sequential(nn.Linear(z_dim, n_project, bias=False),
                                     nn.BatchNorm1d(n_project), nn.ReLU())
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths, widths[1:], strict=False):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(w_out), nn.ReLU()]
        self.up = nn.Sequential(*layers, nn.ConvTranspose2d(hidden, c, 4, stride=2, padding=1),
                                nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.up(self.project(z).view(len(z), *self.start))


def conv_critic(shape: tuple[int, int, int], hidden: int) -> nn.Sequential:
    """DCGAN-style critic: `conv_depth(shape)` stride-2 convolutions (C -> h -> 2h -> ...),
    LeakyReLU(0.2), linear.

    No batch norm: it couples the samples of a batch, which breaks the per-sample gradient
    penalty; Gulrajani et al. 2017 (arXiv 1704.00028, sec. 4) recommend layer normalization
    instead. GroupNorm with one group is layer norm over (channels, height, width) with a
    per-channel affine; as in DCGAN the first layer is not normalised.
    """
    c, h, w = _check_image_shape(shape)
    d = conv_depth(shape)
    layers: list[nn.Module] = [nn.Conv2d(c, hidden, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    for i in range(1, d):
        layers += [nn.Conv2d(hidden << (i - 1), hidden << i, 4, stride=2, padding=1),
                   nn.GroupNorm(1, hidden << i), nn.LeakyReLU(0.2)]
    n_flat = (hidden << (d - 1)) * (h >> d) * (w >> d)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(n_flat, 1))


def _check_image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    c, h, w = shape
    if h % 4 or w % 4:
        raise ValueError(f"conv models need height and width divisible by 4, got {h}x{w}")
    return c, h, w


def _dcgan(cfg: TrialConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    # hidden is the base channel count h: G uses 2h and h channels, the critic h and 2h.
    if len(shape) != 3:
        raise ValueError(f"dcgan is for images (C x H x W), not samples of shape {shape}; "
                         "use --model mlp")
    return ConvGenerator(cfg.z_dim, shape, cfg.hidden), conv_critic(shape, cfg.hidden)


def _mlp(cfg: TrialConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    if len(shape) != 1:
        raise ValueError(f"mlp is for points (D,), not samples of shape {shape}; use --model "
                         "dcgan or your own")
    return _points_models(cfg, shape)


def _stack_mlp(members: list[nn.Module]) -> nn.Module:
    from trainers.batched import StackedMLP

    return StackedMLP.stack(members)


def _stack_conv_generator(members: list[nn.Module]) -> nn.Module:
    from trainers.stacked_conv import StackedConvGenerator

    return StackedConvGenerator.stack(members)


def _stack_conv_critic(members: list[nn.Module]) -> nn.Module:
    from trainers.stacked_conv import StackedConvCritic

    return StackedConvCritic.stack(members)


Builder = Callable[["TrialConfig", tuple[int, ...]], tuple[nn.Module, nn.Module]]
Stacker = Callable[[list[nn.Module]], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered pair of networks: `build(cfg, shape) -> (generator, critic)`, the same
    call a user's model answers. `stack` is an optional hand-written batched form of K
    members (generator, critic), kept only where benchmarks/population.py shows it beats
    the generic torch.func population (trainers/stacked.py); without one, the generic form
    serves."""

    name: str
    doc: str
    build: Builder
    kind: str  # the data it is for: "points" (D,) or "image" (C, H, W)
    stack: tuple[Stacker, Stacker] | None = None
    # The shapes the hand-written form is written for (None: all); others use the generic one.
    stacks_shape: Callable[[tuple[int, ...]], bool] | None = None


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec("mlp", "ReLU/tanh MLPs of `hidden` x `depth` (2D points; the WGAN-GP and "
                     "GDPP toy networks).", _mlp, "points", (_stack_mlp, _stack_mlp)),
    "dcgan": ModelSpec("dcgan", "DCGAN-style conv generator and critic (images; `hidden` base "
                       "channels, height and width divisible by 4; 3 stride-2 layers at "
                       "32x32, 4 at 64x64).", _dcgan, "image",
                       (_stack_conv_generator, _stack_conv_critic),
                       lambda shape: conv_depth(shape) == 2),
}
# The model `auto` picks for each data kind (as before models could be chosen).
AUTO_MODEL = {"points": "mlp", "image": "dcgan"}


def model_name(cfg: TrialConfig, shape: tuple[int, ...]) -> str:
    """The registry name or user spec that `cfg.model` means for samples of `shape`."""
    if cfg.model == "auto":
        return AUTO_MODEL["points" if len(shape) == 1 else "image"]
    return cfg.model


def build_models(cfg: TrialConfig, shape: tuple[int, ...] | Dataset) -> tuple[nn.Module, nn.Module]:
    """(generator, critic) of `cfg.model` for samples of `shape` (or a dataset's shape): a
    registered pair, or a user's `file.py:function` / `package.module:function`. G maps
    (n, z_dim) noise to (n, *shape) samples; the critic maps samples to (n,) or (n, 1)."""
    shape = tuple(getattr(shape, "shape", shape))
    name = model_name(cfg, shape)
    if name in MODELS:
        return MODELS[name].build(cfg, shape)
    from trainers.user_models import build_user_models

    return build_user_models(name, cfg, shape)


def stackers(cfg: TrialConfig, shape: tuple[int, ...]) -> tuple[Stacker, Stacker] | None:
    """The hand-written batched forms of `cfg.model`'s networks, if it has them."""
    spec = MODELS.get(model_name(cfg, shape))
    if spec is None or (spec.stacks_shape is not None and not spec.stacks_shape(shape)):
        return None
    return spec.stack
