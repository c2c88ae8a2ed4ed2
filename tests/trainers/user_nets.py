"""Networks a user might bring (`--model tests/trainers/user_nets.py:NAME`), good and bad,
for tests/trainers/test_user_models.py and the CLI tests. Each is `build(cfg, shape)`."""

import math

import torch
from torch import nn


def bn_mlp(cfg, shape):
    """A generator with batch norm (per-member running statistics), a plain critic. No bias
    before the batch norm (as in DCGAN): its gradient is zero up to round-off, which Adam
    would blow up to steps of size lr, so runs equal in exact arithmetic would drift apart."""
    d = math.prod(shape)
    g = nn.Sequential(nn.Linear(cfg.z_dim, cfg.hidden, bias=False), nn.BatchNorm1d(cfg.hidden),
                      nn.ReLU(), nn.Linear(cfg.hidden, d), nn.Unflatten(1, tuple(shape)))
    c = nn.Sequential(nn.Flatten(), nn.Linear(d, cfg.hidden), nn.LeakyReLU(0.2),
                      nn.Linear(cfg.hidden, 1))
    return g, c


class _Critic1D(nn.Module):
    """A critic giving [B] scores (not [B, 1])."""

    def __init__(self, d, width):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.Tanh(), nn.Linear(width, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


def conv_gn(cfg, shape):
    """Images: a transposed-conv generator and a conv critic with GroupNorm."""
    c, h, w = shape
    g = nn.Sequential(nn.Linear(cfg.z_dim, cfg.hidden * (h // 2) * (w // 2)),
                      nn.Unflatten(1, (cfg.hidden, h // 2, w // 2)), nn.ReLU(),
                      nn.ConvTranspose2d(cfg.hidden, c, 4, stride=2, padding=1), nn.Tanh())
    d = nn.Sequential(nn.Conv2d(c, cfg.hidden, 4, stride=2, padding=1),
                      nn.GroupNorm(2, cfg.hidden), nn.LeakyReLU(0.2), nn.Flatten(),
                      nn.Linear(cfg.hidden * (h // 2) * (w // 2), 1))
    return g, d


def flat_scores(cfg, shape):
    d = math.prod(shape)
    return nn.Sequential(nn.Linear(cfg.z_dim, d), nn.Unflatten(1, tuple(shape))), _Critic1D(d, 8)


# ------------------------------------------------------------------ bad ones
def returns_one(cfg, shape):
    return nn.Linear(cfg.z_dim, 2)


def returns_strings(cfg, shape):
    return "generator", "critic"


def raises(cfg, shape):
    raise RuntimeError("out of ideas")


def wrong_shape(cfg, shape):
    return nn.Linear(cfg.z_dim, 3), nn.Linear(2, 1)


def critic_wrong_shape(cfg, shape):
    return nn.Linear(cfg.z_dim, 2), nn.Linear(2, 4)


class _NaN(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.full((1,), math.nan))

    def forward(self, x):
        return x * self.w


def nan_init(cfg, shape):
    return nn.Sequential(nn.Linear(cfg.z_dim, 2), _NaN()), nn.Linear(2, 1)


def no_params(cfg, shape):
    return nn.Linear(cfg.z_dim, 2), nn.Flatten()


class _Item(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        if x.sum().item() > 0:  # data-dependent Python control flow: vmap cannot batch it
            return self.lin(x)
        return -self.lin(x)


def not_batchable(cfg, shape):
    return nn.Linear(cfg.z_dim, 2), _Item()
