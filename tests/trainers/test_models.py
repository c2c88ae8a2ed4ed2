"""The networks (trainers/models.py): shapes, layer counts and parameter counts in closed
form, and the choices the WGAN-GP paper asks of a critic (no batch norm)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers.config import make_config
from trainers.data import build_dataset
from trainers.models import ConvGenerator, build_models, conv_critic, mlp


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("n_in, n_out, hidden, depth", [(16, 2, 64, 3), (2, 1, 8, 1)])
def test_mlp_layers_and_parameter_count(n_in, n_out, hidden, depth) -> None:
    net = mlp(n_in, n_out, hidden, depth)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert len(linears) == depth + 1
    assert sum(isinstance(m, nn.ReLU) for m in net) == depth
    want = (n_in + 1) * hidden + (depth - 1) * (hidden + 1) * hidden + (hidden + 1) * n_out
    assert _count(net) == want
    assert net(torch.zeros(5, n_in)).shape == (5, n_out)


def test_gdpp_toy_networks_are_tanh_with_orthogonal_weights_and_zero_biases() -> None:
    torch.manual_seed(0)
    net = mlp(256, 2, 128, 2, activation="tanh", init="orthogonal")
    assert sum(isinstance(m, nn.Tanh) for m in net) == 2
    assert not any(isinstance(m, nn.ReLU) for m in net)
    for layer in (m for m in net if isinstance(m, nn.Linear)):
        w = layer.weight.detach().double()
        # Orthogonal: the shorter side's vectors are orthonormal (W W^T = I or W^T W = I).
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, torch.eye(len(gram), dtype=torch.float64),
                                   rtol=0, atol=1e-5)
        assert torch.count_nonzero(layer.bias) == 0
    x = torch.randn(5, 256)
    assert float(net[:2](x).detach().abs().max()) < 1.0  # tanh's range


def test_points_models_follow_the_configs_activation_and_init() -> None:
    cfg = make_config({"dataset": "ring8", "hidden": 8, "depth": 2, "activation": "tanh",
                       "init": "orthogonal", "eval_samples": 10})
    g, d = build_models(cfg, build_dataset(cfg, torch.device("cpu")))
    for net in (g, d):
        assert sum(isinstance(m, nn.Tanh) for m in net) == 2
        assert all(torch.count_nonzero(m.bias) == 0 for m in net if isinstance(m, nn.Linear))


def test_points_models_map_noise_to_the_plane_and_the_plane_to_a_score() -> None:
    cfg = make_config({"dataset": "ring8", "hidden": 32, "depth": 2, "z_dim": 7,
                       "eval_samples": 10})
    g, d = build_models(cfg, build_dataset(cfg, torch.device("cpu")))
    assert g(torch.zeros(4, 7)).shape == (4, 2)
    assert d(torch.zeros(4, 2)).shape == (4, 1)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 28)])
def test_conv_models_keep_the_image_shape(shape) -> None:
    g, d = ConvGenerator(16, shape, 8), conv_critic(shape, 8)
    x = g.eval()(torch.zeros(3, 16))
    assert x.shape == (3, *shape)
    assert float(x.detach().abs().max()) <= 1.0  # tanh: the data lie in [-1, 1]
    assert d(x).shape == (3, 1)
    # The critic has no batch norm (it would break the per-sample gradient penalty).
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in d.modules())
    assert any(isinstance(m, nn.GroupNorm) and m.num_groups == 1 for m in d.modules())


def test_conv_models_refuse_sizes_not_divisible_by_4() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        conv_critic((1, 10, 10), 8)
