"""A residual MLP GAN with LayerNorm for any data: sweeper train --model examples/resmlp.py:build"""
import math

from torch import nn


class Block(nn.Module):  # x + f(x), f a pre-norm MLP
    def __init__(self, w):
        super().__init__()
        self.f = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))

    def forward(self, x):
        return x + self.f(x)


def net(n_in, n_out, cfg):  # cfg: the run's TrialConfig (hidden, depth, z_dim, ...)
    blocks = [Block(cfg.hidden) for _ in range(cfg.depth)]
    return nn.Sequential(nn.Linear(n_in, cfg.hidden), *blocks, nn.LayerNorm(cfg.hidden),
                         nn.Linear(cfg.hidden, n_out))


def build(cfg, shape):  # -> (generator: [B, z_dim] -> [B, *shape], critic: [B, *shape] -> [B, 1])
    d = math.prod(shape)
    return (nn.Sequential(net(cfg.z_dim, d, cfg), nn.Unflatten(1, tuple(shape))),
            nn.Sequential(nn.Flatten(), net(d, 1, cfg)))
