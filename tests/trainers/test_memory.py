"""The memory estimate against closed-form counts, built on the meta device (no storage), or
for a small model probed on the CPU."""

from __future__ import annotations

import time

import pytest
import torch

from trainers import memory
from trainers.config import ConfigError, make_config
from trainers.memory import check_fits, estimate
from trainers.models import build_models


def test_an_mlp_estimate_matches_its_closed_form():
    # ring8: z 16 -> [Linear 8, ReLU] -> Linear 2; critic 2 -> [Linear 8, ReLU] -> Linear 1.
    cfg = make_config({"hidden": 8, "depth": 1, "batch_size": 16, "eval_samples": 100})
    est = estimate(cfg, (2,), members=3)
    params = (16 * 8 + 8 + 8 * 2 + 2) + (2 * 8 + 8 + 8 + 1)
    g, d = build_models(cfg, (2,))
    assert est.params == params == sum(p.numel() for p in (*g.parameters(), *d.parameters()))
    assert est.state_bytes == 4 * params * (2 + 2)  # weights, grads, Adam's two moments
    per_g, per_c = 8 + 8 + 2, 8 + 8 + 1  # leaf outputs per sample
    assert est.step_bytes == 4 * 16 * (per_g + 3 * per_c) * 2
    assert est.eval_bytes == 4 * 100 * (2 + 8)  # samples and the widest generator layer
    assert est.total == 3 * (est.state_bytes + est.step_bytes)
    rms = estimate(cfg.replace(optimizer="rmsprop"), (2,))
    assert rms.state_bytes == 4 * params * 3


def test_billions_of_weights_are_estimated_without_allocating_them():
    cfg = make_config({"hidden": 8192, "depth": 16})
    t0 = time.perf_counter()
    est = estimate(cfg, (2,), members=1000)
    assert time.perf_counter() - t0 < 5
    assert est.params > 2_000_000_000
    with pytest.raises(ConfigError) as e:
        check_fits(est, 24 << 30, "available RAM")
    msg = str(e.value)
    assert "1000 members" in msg and "available RAM is 24.0 GiB" in msg and "--seeds" in msg
    assert "\n" not in msg


def test_image_models_and_what_fits_pass():
    cfg = make_config({"dataset": "stacked-digits", "hidden": 16, "batch_size": 8})
    est = estimate(cfg, (3, 28, 28), members=2)
    assert est.step_bytes > 0 and est.eval_bytes > 0
    check_fits(est, est.total, "available RAM")  # exactly fits: no error


def test_a_model_that_cannot_build_on_meta_is_left_to_the_probe(tmp_path):
    f = tmp_path / "nets.py"
    f.write_text("import torch\n"
                 "def build(cfg, shape):\n"
                 "    raise RuntimeError('needs real numbers')\n")
    cfg = make_config({"model": f"{f}:build"})
    assert estimate(cfg, (2,)) is None
    check_fits(None, 0, "available RAM")  # nothing to check: the probe names the error


def test_meta_forward_leaves_no_real_tensors():
    cfg = make_config({"hidden": 32, "depth": 2})
    before = torch.zeros(1).device
    estimate(cfg, (2,))
    assert torch.zeros(1).device == before  # the meta device context did not leak


@pytest.mark.parametrize("dataset, shape", [("ring8", (2,)), ("stacked-digits", (3, 28, 28))])
def test_the_cpu_probe_of_a_small_model_counts_what_the_meta_probe_counts(monkeypatch, dataset,
                                                                          shape):
    cfg = make_config({"dataset": dataset, "hidden": 16, "depth": 2, "batch_size": 8})
    on_cpu = estimate(cfg, shape, members=2)
    monkeypatch.setattr(memory, "_REAL_PROBE_PARAMS", 0)  # every model probed on meta
    assert estimate(cfg, shape, members=2) == on_cpu


def test_the_cpu_probe_leaves_the_global_generator_where_it_was():
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    estimate(make_config({"hidden": 64, "depth": 3}), (2,))
    assert torch.equal(torch.rand(3), want)


def test_a_small_forward_that_needs_real_numbers_is_still_counted(tmp_path):
    f = tmp_path / "nets.py"
    f.write_text("import torch\n"
                 "class G(torch.nn.Module):\n"
                 "    def __init__(self):\n"
                 "        super().__init__()\n"
                 "        self.a = torch.nn.Linear(16, 8)\n"
                 "        self.b = torch.nn.Linear(8, 2)\n"
                 "    def forward(self, z):\n"
                 "        h = self.a(z)\n"
                 "        assert h.abs().max().item() >= 0  # real numbers: fails on meta\n"
                 "        return self.b(h)\n"
                 "def build(cfg, shape):\n"
                 "    d = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Linear(4, 1))\n"
                 "    return G(), d\n")
    est = estimate(make_config({"model": f"{f}:build", "batch_size": 4}), (2,))
    assert est.step_bytes == 4 * 4 * ((8 + 2) + 3 * (4 + 1)) * 2
