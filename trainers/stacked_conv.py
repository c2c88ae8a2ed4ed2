"""K conv generators / critics (`trainers.models`) fused into one module, HFTA style.

HFTA (Wang et al. 2021, arXiv 2102.02344) fuses K copies of a network by turning every
convolution into a grouped one (groups=K) over [B, K*C, H, W] maps in which member j owns a
contiguous block of channels, so one kernel does the work of K. Every parameter and buffer
is stored with the member as its first dimension, as the batched optimisers and per-member
clipping/freezing of `trainers.population` index `p[j]`; forward reshapes them with views.

`stack(members)` copies K separately built (and seeded) members exactly, and
`member_state_dict(j)` gives back member j in the layout of the original module, so a
population member can be saved as a single-run model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from trainers.models import ConvGenerator



class _StackedModule(nn.Module, ABC):
    """Copying members in and out through views of the stacked tensors."""

    @abstractmethod
    def _member_views(self, j: int) -> dict[str, Tensor]:
        """Member state-dict key -> view of the stacked tensor holding member j's entry."""

    def member_state_dict(self, j: int) -> dict[str, Tensor]:
        # Contiguous copies: torch.save of a view would write the whole stacked storage.
        return {key: v.detach().clone(memory_format=torch.contiguous_format)
                for key, v in self._member_views(j).items()}

    def _copy_members(self, members: Sequence[nn.Module]) -> Self:
        with torch.no_grad():
            for j, member in enumerate(members):
                state, views = member.state_dict(), self._member_views(j)
                if state.keys() != views.keys():
                    raise ValueError(f"member {j} is not a {type(self).__name__} member: "
                                     f"keys {sorted(state)} != {sorted(views)}")
                for key, view in views.items():
                    if view.shape != state[key].shape:
                        raise ValueError(f"member {j}: {key} has shape "
                                         f"{tuple(state[key].shape)}, not {tuple(view.shape)}")
                    view.copy_(state[key])
        return self


class _StackedBatchNorm(nn.Module):
    """K BatchNorms of n features (momentum 0.1, eps 1e-5) over [B, K*n, ...] inputs."""

    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(self, k: int, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(k, n))
        self.bias = nn.Parameter(torch.zeros(k, n))
        self.register_buffer("running_mean", torch.zeros(k, n))
        self.register_buffer("running_var", torch.ones(k, n))
        self.register_buffer("num_batches_tracked", torch.zeros(k, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        # The buffers are contiguous, so F.batch_norm's in-place update of the flat views
        # updates each member's [K, n] row, exactly as K separate BatchNorms would.
        return F.batch_norm(x, self.running_mean.view(-1), self.running_var.view(-1),
                            self.weight.view(-1), self.bias.view(-1), self.training, 0.1, 1e-5)

    def member_views(self, j: int, prefix: str) -> dict[str, Tensor]:
        return {prefix + name: t[j] for name, t in [
            ("weight", self.weight), ("bias", self.bias), ("running_mean", self.running_mean),
            ("running_var", self.running_var), ("num_batches_tracked", self.num_batches_tracked)]}


class StackedConvGenerator(_StackedModule):
    """K `ConvGenerator`s: z [K, B, z_dim] -> images [K, B, C, H, W].

    Weights start at zero: build the members as a single run would and use `stack`. The
    output is a transposed view of the [B, K*C, H, W] map (`StackedConvCritic` takes it back
    without a copy).
    """

    def __init__(self, k: int, z_dim: int, shape: tuple[int, int, int], hidden: int) -> None:
        super().__init__()
        c, h, w = shape  # checked when the members were built (trainers.models)
        self.k, self.start = k, (2 * hidden, h // 4, w // 4)
        n_project = 2 * hidden * (h // 4) * (w // 4)
        self.project_weight = nn.Parameter(torch.zeros(k, z_dim, n_project))  # Linear.weight.t()
        self.project_bn = _StackedBatchNorm(k, n_project)
        self.up1_weight = nn.Parameter(torch.zeros(k, 2 * hidden, hidden, 4, 4))
        self.up1_bn = _StackedBatchNorm(k, hidden)
        self.up2_weight = nn.Parameter(torch.zeros(k, hidden, c, 4, 4))
        self.up2_bias = nn.Parameter(torch.zeros(k, c))

    @classmethod
    def stack(cls, members: Sequence[ConvGenerator]) -> Self:
        m = members[0]
        shape = (m.up[3].out_channels, 4 * m.start[1], 4 * m.start[2])
        return cls(len(members), m.project[0].in_features, shape,
                   m.up[0].out_channels)._copy_members(members)

    def forward(self, z: Tensor) -> Tensor:
        k, b = self.k, z.shape[1]
        x = torch.bmm(z, self.project_weight).transpose(0, 1).reshape(b, -1)  # [B, K*F]
        # Member j's F features are (2h, H/4, W/4) in C order, so this view gives it
        # channels j*2h .. (j+1)*2h - 1, the block grouped convolution j reads.
        x = torch.relu(self.project_bn(x)).view(b, k * self.start[0], *self.start[1:])
        x = F.conv_transpose2d(x, self.up1_weight.flatten(0, 1), stride=2, padding=1, groups=k)
        x = torch.relu(self.up1_bn(x))
        x = F.conv_transpose2d(x, self.up2_weight.flatten(0, 1), self.up2_bias.view(-1),
                               stride=2, padding=1, groups=k)
        return torch.tanh(x).view(b, k, -1, *x.shape[2:]).transpose(0, 1)

    def _member_views(self, j: int) -> dict[str, Tensor]:
        return {"project.0.weight": self.project_weight[j].t(),
                **self.project_bn.member_views(j, "project.1."),
                "up.0.weight": self.up1_weight[j],
                **self.up1_bn.member_views(j, "up.1."),
                "up.3.weight": self.up2_weight[j],
                "up.3.bias": self.up2_bias[j]}


class StackedConvCritic(_StackedModule):
    """K `conv_critic`s: images [K, B, C, H, W] -> scores [K, B, 1].

    `n_flat` is the critic's flattened width 2h * (H/4) * (W/4); it is all the parameters
    depend on, and all that a `conv_critic` keeps of the image shape. Weights start at zero:
    build the members as a single run would and use `stack`.
    """

    def __init__(self, k: int, channels: int, hidden: int, n_flat: int) -> None:
        super().__init__()
        self.k = k
        self.conv1_weight = nn.Parameter(torch.zeros(k, hidden, channels, 4, 4))
        self.conv1_bias = nn.Parameter(torch.zeros(k, hidden))
        self.conv2_weight = nn.Parameter(torch.zeros(k, 2 * hidden, hidden, 4, 4))
        self.conv2_bias = nn.Parameter(torch.zeros(k, 2 * hidden))
        self.norm_weight = nn.Parameter(torch.ones(k, 2 * hidden))
        self.norm_bias = nn.Parameter(torch.zeros(k, 2 * hidden))
        self.linear_weight = nn.Parameter(torch.zeros(k, n_flat, 1))  # Linear.weight.t()
        self.linear_bias = nn.Parameter(torch.zeros(k, 1, 1))

    @classmethod
    def stack(cls, members: Sequence[nn.Sequential]) -> Self:
        conv1, linear = members[0][0], members[0][6]
        return cls(len(members), conv1.in_channels, conv1.out_channels,
                   linear.in_features)._copy_members(members)

    def forward(self, x: Tensor) -> Tensor:
        k, b = self.k, x.shape[1]
        x = x.transpose(0, 1).reshape(b, -1, *x.shape[3:])  # [B, K*C, H, W]
        x = F.conv2d(x, self.conv1_weight.flatten(0, 1), self.conv1_bias.view(-1),
                     stride=2, padding=1, groups=k)
        x = F.leaky_relu(x, 0.2)
        x = F.conv2d(x, self.conv2_weight.flatten(0, 1), self.conv2_bias.view(-1),
                     stride=2, padding=1, groups=k)
        # K groups of 2h channels: each member's GroupNorm(1, 2h), per-channel affine included.
        x = F.group_norm(x, k, self.norm_weight.view(-1), self.norm_bias.view(-1), 1e-5)
        x = F.leaky_relu(x, 0.2).reshape(b, k, -1).transpose(0, 1)  # [K, B, n_flat]
        return torch.baddbmm(self.linear_bias, x, self.linear_weight)

    def _member_views(self, j: int) -> dict[str, Tensor]:
        return {"0.weight": self.conv1_weight[j], "0.bias": self.conv1_bias[j],
                "2.weight": self.conv2_weight[j], "2.bias": self.conv2_bias[j],
                "3.weight": self.norm_weight[j], "3.bias": self.norm_bias[j],
                "6.weight": self.linear_weight[j].t(), "6.bias": self.linear_bias[j, 0]}
