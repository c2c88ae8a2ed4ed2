"""Closed-form checks of the mode metrics and the Frechet distance (trainers/metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.stats import chi2

from trainers import names
from trainers.config import make_config
from trainers.data import build_dataset, grid_centres, ring_centres
from trainers.metrics import fid, frechet_distance, gaussian_stats, kl_to_reference, mode_coverage

N_EVAL = 2500  # PacGAN protocol

# HQ means "within 3 sigma of the nearest centre". For an isotropic 2D Gaussian the squared
# distance over sigma^2 is chi-square with 2 degrees of freedom, so
#   P(HQ) = P(chi2_2 <= 9) = 1 - exp(-9/2) = 0.98889.
# The "~0.997" sometimes quoted for 3 sigma is the 1D figure P(|z| <= 3) = erf(3/sqrt 2); it
# does not apply to points in the plane. (Modes of ring8/grid25 are >= 40 sigma apart, so the
# nearest centre is the sample's own centre with probability 1 to double precision.)
HQ_2D = 1.0 - math.exp(-4.5)
HQ_1D = math.erf(3 / math.sqrt(2))


def _binomial_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def _kl_bound(k: int, n: int, q: float = 0.9999) -> float:
    """Upper q-quantile of the plug-in KL(p_hat || U(k)) for n samples of the uniform law.

    2 n KL is asymptotically chi-square with k - 1 degrees of freedom (it is the G-test).
    """
    return chi2.ppf(q, k - 1) / (2 * n)


def _true_samples(dataset: str, n: int, seed: int = 0) -> tuple[np.ndarray, object]:
    data = build_dataset(make_config({"dataset": dataset, "eval_samples": N_EVAL}),
                         torch.device("cpu"))
    g = torch.Generator().manual_seed(seed)
    return data.sample(n, g).double().numpy(), data


# ----------------------------------------------------------------------------- datasets
def test_ring_centres_are_eight_distinct_points_on_the_unit_circle() -> None:
    c = ring_centres(8)
    assert c.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-12)
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    off_diag = d[~np.eye(8, dtype=bool)]
    # neighbours are 2 sin(pi/8) apart; linspace(0, 2 pi, 8) would give a duplicate (distance 0)
    assert off_diag.min() == pytest.approx(2 * math.sin(math.pi / 8), abs=1e-12)
    angles = np.sort(np.mod(np.arctan2(c[:, 1], c[:, 0]), 2 * math.pi))
    np.testing.assert_allclose(angles, 2 * math.pi * np.arange(8) / 8, atol=1e-12)


def test_grid_centres_are_the_25_points_of_the_pacgan_grid() -> None:
    c = grid_centres()
    assert c.shape == (25, 2)
    assert len({tuple(row) for row in c}) == 25
    assert set(c.ravel().tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


def test_dataset_objects_use_the_protocol_centres_and_sigma() -> None:
    _, ring = _true_samples("ring8", 1)
    _, grid = _true_samples("grid25", 1)
    np.testing.assert_allclose(ring.centres_np, ring_centres(8), atol=1e-12)
    np.testing.assert_allclose(grid.centres_np, grid_centres(), atol=1e-12)
    assert (ring.sigma, ring.num_modes) == (0.01, 8)
    assert (grid.sigma, grid.num_modes) == (0.05, 25)


# ----------------------------------------------------------------------------- mode coverage
@pytest.mark.parametrize("dataset,k", [("ring8", 8), ("grid25", 25)])
def test_true_samples_cover_every_mode_with_2d_hq_rate(dataset: str, k: int) -> None:
    x, data = _true_samples(dataset, N_EVAL)
    m = mode_coverage(x, data.centres_np, data.sigma)
    assert m[names.MODES_COVERED] == k
    assert m[names.NUM_MODES] == k
    # 4 binomial standard errors (0.0084 at N = 2,500) around the exact 2D value
    assert abs(m[names.HQ_FRACTION] - HQ_2D) <= 4 * _binomial_se(HQ_2D, N_EVAL)
    n_hq = round(m[names.HQ_FRACTION] * N_EVAL)
    assert 0 <= m[names.MODE_KL] <= _kl_bound(k, n_hq)
    # the dataset's own evaluate() agrees and its FID against the real set is near 0
    ev = data.evaluate(torch.as_tensor(x))
    assert ev[names.MODES_COVERED] == k
    assert ev[names.HQ_FRACTION] == m[names.HQ_FRACTION]
    assert ev[names.FID_N] == N_EVAL
    # FID of two independent N-samples of one law: the mean term alone has expectation
    # 2 tr(C) / N; 10 tr(C) / N leaves room for the covariance term (0.004 ring8, 0.06 grid25).
    tr_c = np.trace(np.cov(data.real_eval, rowvar=False))
    assert 0 <= ev[names.FID] < 10 * tr_c / N_EVAL


def test_hq_rate_is_the_2d_not_the_1d_three_sigma_figure() -> None:
    # With 40,000 samples the standard error is 0.0005: 0.9889 and 0.9973 are > 15 s.e. apart.
    n = 40_000
    x, data = _true_samples("ring8", n, seed=1)
    hq = mode_coverage(x, data.centres_np, data.sigma)[names.HQ_FRACTION]
    se = _binomial_se(HQ_2D, n)
    assert abs(hq - HQ_2D) <= 4 * se
    assert abs(hq - HQ_1D) > 10 * se


def test_hq_uses_the_3_sigma_radius_exactly() -> None:
    centres = ring_centres(8)
    sigma = 0.01
    inside = centres[0] + np.array([[3 * sigma * (1 - 1e-9), 0.0]])
    outside = centres[0] + np.array([[3 * sigma * (1 + 1e-6), 0.0]])
    assert mode_coverage(inside, centres, sigma)[names.HQ_FRACTION] == 1.0
    assert mode_coverage(outside, centres, sigma)[names.HQ_FRACTION] == 0.0


def test_all_samples_on_one_centre_is_one_mode_and_kl_log8() -> None:
    centres = ring_centres(8)
    x = np.repeat(centres[3:4], 100, axis=0)
    m = mode_coverage(x, centres, 0.01)
    assert m[names.MODES_COVERED] == 1
    assert m[names.HQ_FRACTION] == 1.0
    assert m[names.MODE_KL] == pytest.approx(math.log(8), abs=1e-12)


def test_uniform_histogram_has_zero_kl_and_two_modes_have_log_k_over_2() -> None:
    centres = grid_centres()
    x = np.repeat(centres, 4, axis=0)
    assert mode_coverage(x, centres, 0.05)[names.MODE_KL] == pytest.approx(0.0, abs=1e-12)
    two = np.concatenate([np.repeat(centres[:1], 7, 0), np.repeat(centres[1:2], 7, 0)])
    m = mode_coverage(two, centres, 0.05)
    assert m[names.MODES_COVERED] == 2
    assert m[names.MODE_KL] == pytest.approx(math.log(25 / 2), abs=1e-12)


@pytest.mark.parametrize("k,sigma,centres", [(8, 0.01, ring_centres(8)),
                                              (25, 0.05, grid_centres())])
def test_no_hq_samples_gives_zero_modes_and_kl_log_k(k: int, sigma: float,
                                                     centres: np.ndarray) -> None:
    # (1, 1) + small offsets is > 3 sigma from every centre of both mixtures
    x = np.array([[1.0, 1.0], [1.1, 0.9], [-3.0, -3.0], [10.0, 10.0]])
    m = mode_coverage(x, centres, sigma)
    assert m[names.MODES_COVERED] == 0
    assert m[names.HQ_FRACTION] == 0.0
    assert m[names.MODE_KL] == pytest.approx(math.log(k), abs=1e-12)


def test_kl_to_reference_matches_direct_sum_for_nonuniform_reference() -> None:
    counts = np.array([3.0, 0.0, 1.0])
    ref = np.array([0.5, 0.25, 0.25])
    p = counts / counts.sum()
    expected = p[0] * math.log(p[0] / ref[0]) + p[2] * math.log(p[2] / ref[2])
    assert kl_to_reference(counts, ref) == pytest.approx(expected, abs=1e-15)
    assert kl_to_reference(np.zeros(3), ref) == pytest.approx(math.log(4), abs=1e-15)


# ----------------------------------------------------------------------------- FID
def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _fid_scipy(mu1, c1, mu2, c2) -> float:
    """The usual FID formula with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(c1 @ c2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean).real)


@pytest.mark.parametrize("d", [np.array([3.0, 4.0]), np.array([0.0, -0.5]),
                               np.array([1.0, 2.0, 2.0, 0.0, 0.0])])
def test_shifted_gaussian_has_fid_d_squared_exact_stats(d: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    mu = rng.standard_normal(len(d))
    c = _random_spd(rng, len(d))
    assert frechet_distance(mu, c, mu + d, c) == pytest.approx(d @ d, abs=1e-9)


def test_shifted_gaussian_has_fid_d_squared_from_samples() -> None:
    rng = np.random.default_rng(1)
    n, d = 20_000, np.array([3.0, 4.0])
    x = rng.standard_normal((n, 2))
    y = rng.standard_normal((n, 2)) + d
    # Sampling error is dominated by 2 d.(mean_x - mean_y), s.d. 2 |d| sqrt(2/n) = 0.1;
    # the covariance term adds O(1/n). 0.5 is 5 s.d.
    assert fid(x, y) == pytest.approx(25.0, abs=0.5)
    # the same samples shifted: covariances identical, so the answer is exact
    assert fid(x, x + d) == pytest.approx(25.0, abs=1e-8)


def test_identical_stats_give_zero_and_fid_is_symmetric() -> None:
    rng = np.random.default_rng(2)
    for dim in (1, 2, 8):
        mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
        c1, c2 = _random_spd(rng, dim), _random_spd(rng, dim)
        assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9 * np.trace(c1))
        assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(
            frechet_distance(mu2, c2, mu1, c1), rel=1e-9)
    x = rng.standard_normal((500, 3))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-9)


def test_frechet_matches_scipy_sqrtm_on_random_spd() -> None:
    rng = np.random.default_rng(3)
    for dim in (2, 3, 5, 16):
        for _ in range(5):
            mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
            c1, c2 = _random_spd(rng, dim), _random_spd(rng, dim)
            ours = frechet_distance(mu1, c1, mu2, c2)
            assert ours == pytest.approx(_fid_scipy(mu1, c1, mu2, c2), rel=1e-7, abs=1e-9)


def test_commuting_covariances_give_the_closed_form() -> None:
    # diagonal covariances: FID = |dmu|^2 + sum (sqrt a_i - sqrt b_i)^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu = np.zeros(3)
    expected = (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    assert frechet_distance(mu, np.diag(a), mu, np.diag(b)) == pytest.approx(expected, abs=1e-12)


def test_near_singular_covariances_give_finite_correct_values() -> None:
    mu = np.zeros(2)
    # rank-deficient and tiny-eigenvalue covariances: sqrtm of the product can go complex/NaN
    c1 = np.diag([1.0, 0.0])
    c2 = np.diag([4.0, 0.0])
    assert frechet_distance(mu, c1, mu, c2) == pytest.approx(1.0, abs=1e-12)
    c3 = np.array([[1.0, 1.0], [1.0, 1.0]]) + 1e-14 * np.eye(2)
    c4 = np.array([[1.0, -1.0], [-1.0, 1.0]]) + 1e-14 * np.eye(2)
    v = frechet_distance(mu, c3, mu, c4)
    # orthogonal rank-1 covariances: the cross term vanishes, FID = tr c3 + tr c4 = 4
    assert math.isfinite(v) and v == pytest.approx(4.0, abs=1e-6)
    # collapsed generator: every sample identical (zero covariance), and points on a line
    rng = np.random.default_rng(4)
    real = rng.standard_normal((1000, 2))
    collapsed = np.zeros((1000, 2))
    line = np.stack([np.linspace(-1, 1, 1000)] * 2, axis=1)
    for fake in (collapsed, line):
        value = fid(real, fake)
        assert math.isfinite(value) and value >= 0
    mu_r, c_r = gaussian_stats(real)
    assert fid(real, collapsed) == pytest.approx(mu_r @ mu_r + np.trace(c_r), rel=1e-12)
    assert fid(collapsed, collapsed) == 0.0


def test_gaussian_stats_of_one_dimensional_features() -> None:
    x = np.array([[1.0], [2.0], [3.0]])
    mu, c = gaussian_stats(x)
    assert mu.shape == (1,) and c.shape == (1, 1)
    assert c[0, 0] == pytest.approx(1.0)  # unbiased variance of 1, 2, 3
    assert fid(x, x + 2) == pytest.approx(4.0, abs=1e-12)
