"""Precision, recall, density and coverage against cases whose answers are known in closed form."""

import math

import numpy as np
import pytest
import torch

from trainers import names, prdc
from trainers.config import TrialConfig
from trainers.data import build_dataset, ring_centres

N = 2500  # the evaluation size of the 2D protocol
CENTRES = ring_centres(8)
KEYS = (names.PRECISION, names.RECALL, names.DENSITY, names.COVERAGE)


def ring8(n, rng, sigma=0.01, modes=range(8)):
    return CENTRES[rng.choice(list(modes), n)] + sigma * rng.standard_normal((n, 2))


@pytest.fixture(scope="module")
def real():
    return prdc.manifold(ring8(N, np.random.default_rng(0)))


def test_a_hand_counted_case():
    # Real points 0, 1, 2, 3 on a line, k = 1: every real ball has radius 1. The generated
    # point 0.5 lies in the balls of 0 and 1, the point 10 in none; each generated ball has
    # radius 9.5 (the other generated point), wide enough to hold every real point.
    real = np.array([[0.0, 0], [1, 0], [2, 0], [3, 0]])
    fake = np.array([[0.5, 0], [10, 0]])
    got = prdc.prdc(real, fake, k=1)
    assert got == {names.PRECISION: 0.5, names.RECALL: 1.0, names.DENSITY: 1.0,
                   names.COVERAGE: 0.5}  # density: 2 balls / (k * M = 2)


def test_a_fresh_draw_of_the_truth_scores_about_one(real):
    got = prdc.prdc(real, ring8(N, np.random.default_rng(1)))
    assert got[names.PRECISION] > 0.97 and got[names.RECALL] > 0.97
    assert abs(got[names.DENSITY] - 1) < 0.05  # E[density] = 1
    # E[coverage] = 1 - prod (N-i)/(2N-i), about 1 - 2^-5 = 0.969 (Naeem et al. 2020, sec. 4);
    # the standard deviation at N = 2,500 is about 0.004.
    assert abs(got[names.COVERAGE] - prdc.expected_coverage(N, N)) < 0.015


def test_expected_coverage_tends_to_one_minus_two_to_the_minus_k():
    assert prdc.expected_coverage(10**7, 10**7) == pytest.approx(1 - 2 ** -5, abs=1e-6)
    assert prdc.expected_coverage(N, 10 * N) > 0.99  # more samples cover more balls


def test_one_mode_of_eight_keeps_precision_and_loses_recall_and_coverage(real):
    got = prdc.prdc(real, ring8(N, np.random.default_rng(2), modes=[3]))
    assert got[names.PRECISION] > 0.97  # every sample is realistic ...
    assert abs(got[names.DENSITY] - 1) < 0.1
    # ... but only the real samples of one mode (1/8, sd 0.007 at N = 2,500) are represented.
    assert abs(got[names.RECALL] - 1 / 8) < 0.025
    assert abs(got[names.COVERAGE] - 1 / 8) < 0.025


def test_far_away_samples_score_zero(real):
    got = prdc.prdc(real, ring8(N, np.random.default_rng(3)) + 100.0)
    assert got == dict.fromkeys(KEYS, 0.0)


def test_a_wider_mixture_loses_precision_and_density(real):
    got = prdc.prdc(real, ring8(N, np.random.default_rng(4), sigma=0.03))
    # With 3x the spread, P(inside a real ball) falls to about half and the samples that do
    # land inside sit in sparser real regions, so density falls further; the wide samples still
    # reach every real sample, so recall stays.
    assert got[names.PRECISION] < 0.7 and got[names.DENSITY] < 0.5
    assert got[names.RECALL] > 0.97


def test_sets_are_cut_to_max_samples(monkeypatch):
    monkeypatch.setattr(prdc, "MAX_SAMPLES", 100)
    m = prdc.manifold(np.random.default_rng(5).standard_normal((300, 3)))
    assert m.features.shape == (100, 3) and m.radii.shape == (100,)


def test_radii_are_the_kth_neighbour_excluding_the_sample_itself():
    m = prdc.manifold(torch.arange(10.0)[:, None], k=2)
    assert m.radii.tolist() == [2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]


def test_bad_inputs_are_refused():
    # k samples or fewer have no k-th neighbour: no values rather than made-up ones.
    assert prdc.manifold(np.zeros((5, 2))) is None
    assert prdc.prdc(np.random.default_rng(0).random((20, 2)), np.zeros((3, 2))) == {}
    with pytest.raises(ValueError, match="differ in size"):
        prdc.prdc(np.random.default_rng(0).random((20, 2)),
                  np.random.default_rng(0).random((20, 3)))


def test_the_2d_datasets_report_all_four_on_their_raw_coordinates():
    ds = build_dataset(TrialConfig(dataset="ring8", eval_samples=N), torch.device("cpu"))
    got = ds.evaluate(torch.as_tensor(ring8(N, np.random.default_rng(6)), dtype=torch.float32))
    assert got[names.PRECISION] > 0.97 and got[names.COVERAGE] > 0.94
    assert all(math.isfinite(got[k]) for k in KEYS)
