"""The 2D mixtures (trainers/data.py) against closed forms, and the dataset registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainers import names
from trainers.config import make_config
from trainers.data import (
    DATASETS,
    REAL_HQ_2D,
    GaussianMixture2D,
    build_dataset,
    grid_centres,
    ring_centres,
)

CPU = torch.device("cpu")


def test_ring_centres_are_k_distinct_points_on_the_circle() -> None:
    c = ring_centres(8, 2.0)
    assert c.shape == (8, 2)
    assert np.allclose(np.hypot(c[:, 0], c[:, 1]), 2.0)
    assert np.allclose(c[0], [2.0, 0.0]) and np.allclose(c[2], [0.0, 2.0], atol=1e-12)
    # Neighbours are 2 r sin(pi / k) apart; no centre repeats (the linspace bug).
    d = np.linalg.norm(np.roll(c, -1, axis=0) - c, axis=1)
    assert np.allclose(d, 2 * 2.0 * math.sin(math.pi / 8))


def test_grid_centres_are_the_5x5_lattice() -> None:
    c = grid_centres()
    assert c.shape == (25, 2)
    assert {tuple(p) for p in c} == {(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}


def test_the_real_hq_fraction_is_the_rayleigh_mass_within_3_sigma() -> None:
    assert REAL_HQ_2D == pytest.approx(1 - math.exp(-9 / 2), rel=1e-15)
    # And an empirical draw agrees (N = 200,000: s.e. ~ 2.3e-4).
    data = GaussianMixture2D(ring_centres(), 0.01, CPU, 10)
    x = data.sample(200_000, torch.Generator().manual_seed(0)).double().numpy()
    r = np.min(np.linalg.norm(x[:, None, :] - data.centres_np[None], axis=2), axis=1)
    assert np.mean(r <= 0.03) == pytest.approx(REAL_HQ_2D, abs=1.5e-3)


def test_samples_have_the_mixtures_mean_weights_and_spread() -> None:
    data = GaussianMixture2D(grid_centres(), 0.05, CPU, 10)
    x = data.sample(100_000, torch.Generator().manual_seed(1)).double().numpy()
    nearest = np.argmin(np.linalg.norm(x[:, None] - data.centres_np[None], axis=2), axis=1)
    share = np.bincount(nearest, minlength=25) / len(x)
    assert np.allclose(share, 1 / 25, atol=0.003)  # equal weights; s.e. ~ 6e-4
    residual = x - data.centres_np[nearest]
    assert np.std(residual, axis=0) == pytest.approx([0.05, 0.05], rel=0.02)


def test_sampling_is_reproducible_for_a_generator_seed() -> None:
    data = GaussianMixture2D(ring_centres(), 0.01, CPU, 10)
    a = data.sample(50, torch.Generator().manual_seed(3))
    b = data.sample(50, torch.Generator().manual_seed(3))
    c = data.sample(50, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_real_data_scores_as_real_on_its_own_metrics() -> None:
    data = build_dataset(make_config({"dataset": "ring8", "eval_samples": 2500}), CPU)
    m = data.evaluate(data.sample(2500, torch.Generator().manual_seed(9)))
    assert m[names.NUM_MODES] == 8 and m[names.MODES_HELD] == 8
    assert m[names.HQ_FRACTION] == pytest.approx(REAL_HQ_2D, abs=0.01)
    assert m[names.SEED_SUCCESS] == 1.0 and m[names.SEED_SCORE] < 0.05


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_dataset_scale_scales_centres_and_sigma_together(scale: float) -> None:
    data = build_dataset(make_config({"dataset": "grid25", "dataset_scale": scale,
                                      "eval_samples": 10}), CPU)
    assert np.allclose(data.centres_np, grid_centres() * scale)
    assert data.sigma == pytest.approx(0.05 * scale)


def test_every_registered_dataset_names_itself_and_its_shape() -> None:
    for name, spec in DATASETS.items():
        assert spec.name == name and spec.doc.endswith(".")  # shown by `sweeper datasets`
        assert spec.kind == ("points" if spec.shape == (2,) else "image")
