"""Probing a model before anything trains: one line for each way it can be wrong.

`check_model(cfg, shape)` builds the networks of `cfg.model` (a registered model or a
user's `file.py:function`) as member 0 would be built, runs them on a probe batch, and for a
user's model also as a batched population of two (torch.func), which is how it will train.
`sweeper train`, `sweeper run` (before Ray starts) and `stable --confirm` call it.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from trainers.errors import ConfigError
from trainers.models import build_models
from trainers.stacked import FuncStack
from trainers.user_models import describe_error as _err
from trainers.user_models import is_user_spec

if TYPE_CHECKING:
    from trainers.config import TrialConfig

# Samples in the probe batch: two, so that batch norm in training mode has a batch.
_PROBE = 2


def check_model(cfg: TrialConfig, shape: tuple[int, ...]) -> None:
    """Build `cfg`'s networks and run them on a probe batch, as one member and as a batched
    population of two: one line naming the first thing wrong. Registered models pass."""
    shape = tuple(shape)
    spec = cfg.model
    torch.manual_seed(cfg.seed)
    try:
        g, d = build_models(cfg, shape)
    except ConfigError:
        raise
    except ValueError as e:  # a registered model refusing the shape
        raise ConfigError(f"model {spec}: {e}") from None
    with torch.no_grad():
        _check_nets(g, d, spec, cfg.z_dim, shape)


def _check_nets(g: nn.Module, d: nn.Module, spec: str, z_dim: int,
                shape: tuple[int, ...]) -> None:
    for net, name in ((g, "generator"), (d, "critic")):
        if not any(True for _ in net.parameters()):
            raise ConfigError(f"model {spec[:200]}: the {name} has no parameters; it must "
                              "have weights to train")
    z = torch.randn(_PROBE, z_dim, generator=torch.Generator().manual_seed(0))
    x = _probe(g, z, "generator", spec, f"[{_PROBE}, {z_dim}] noise")
    want = (_PROBE, *shape)
    if tuple(x.shape) != want:
        raise ConfigError(f"model {spec[:200]}: the generator maps [{_PROBE}, {z_dim}] "
                          f"noise to shape {list(x.shape)}; it must give {list(want)} (batch, "
                          "then the shape of one real sample)")
    y = _probe(d, x.detach(), "critic", spec, f"{list(want)} samples")
    if tuple(y.shape) not in ((_PROBE,), (_PROBE, 1)):
        raise ConfigError(f"model {spec[:200]}: the critic maps {list(want)} samples to shape "
                          f"{list(y.shape)}; it must give [{_PROBE}] or [{_PROBE}, 1], one "
                          "score per sample")
    if not is_user_spec(spec):
        return
    # The population trains members through torch.func.vmap: try it on two copies.
    for net, name, inp in ((g, "generator", z), (d, "critic", x.detach())):
        try:
            FuncStack([net, copy.deepcopy(net)])(torch.stack([inp, inp]))
        except Exception as e:  # noqa: BLE001 - vmap refuses in many ways
            raise ConfigError(f"model {spec[:200]}: the {name} cannot be batched as a "
                              f"population with torch.func.vmap ({_err(e)}); avoid .item(), "
                              "in-place ops on inputs and data-dependent Python control flow "
                              "in forward") from None


def _probe(net: nn.Module, x: torch.Tensor, name: str, spec: str, what: str) -> torch.Tensor:
    try:
        out = net(x)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"model {spec[:200]}: the {name} failed on a probe batch of {what} "
                          f"({_err(e)})") from None
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"model {spec[:200]}: the {name} returned a "
                          f"{type(out).__name__}, not a tensor")
    if not torch.isfinite(out).all():
        bad = int((~torch.isfinite(out)).sum())
        raise ConfigError(f"model {spec[:200]}: the {name} gives {bad} non-finite values "
                          f"(NaN/inf) on a probe batch of {what} at initialisation; check its "
                          "init and forward")
    if not math.prod(out.shape):
        raise ConfigError(f"model {spec[:200]}: the {name} returned an empty tensor")
    return out
