"""The quality score and the success rule (trainers/quality.py) on closed-form cases.

The 2D cases are drawn with fixed seeds at the protocol's N = 2,500 and scored through the
datasets' own `evaluate`, as `sweeper eval` and the trainer score them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainers import names
from trainers.config import ConfigError, make_config
from trainers.data import REAL_HQ_2D, build_dataset
from trainers.quality import (
    DEFAULT_RULE,
    LEGACY_RULE,
    SuccessRule,
    failed_metrics,
    quality_metrics,
    rule_from_mapping,
    seed_score,
)

N = 2500
CPU = torch.device("cpu")


def _data(name: str):
    return build_dataset(make_config({"dataset": name, "eval_samples": N}), CPU)


def _mixture(name: str, *, sigma_scale: float = 1.0, modes: int | None = None, seed: int = 5):
    """N samples of the dataset's mixture with sigma x sigma_scale, on its first `modes`."""
    d = _data(name)
    g = torch.Generator().manual_seed(seed)
    k = modes or d.num_modes
    idx = torch.randint(k, (N,), generator=g)
    x = d.centres[idx] + sigma_scale * d.sigma * torch.randn(N, 2, generator=g)
    return d, x


def _uniform_ring(seed: int = 5) -> torch.Tensor:
    theta = torch.rand(N, generator=torch.Generator().manual_seed(seed)) * 2 * math.pi
    return torch.stack([theta.cos(), theta.sin()], 1)


# ------------------------------------------------------------------------- the score by hand
def test_score_is_total_variation_over_modes_plus_off_mode_bin() -> None:
    # p = (10, 0)/20 on the modes and 0.5 off-mode; q = (0.5, 0.5) and 0 off-mode.
    assert seed_score(np.array([10.0, 0.0]), 20, np.array([0.5, 0.5]), 1.0) == 0.5
    # Identical histograms (including the off-mode bin) score exactly 0.
    assert seed_score(np.array([45.0, 45.0]), 100, np.array([0.5, 0.5]), 0.9) == \
        pytest.approx(0.0, abs=1e-15)
    # Disjoint: everything off-mode while the real data is all on-mode.
    assert seed_score(np.zeros(8), 100, np.full(8, 1 / 8), 1.0) == 1.0
    # A non-uniform reference: p = (0.6, 0.2, 0.2 off), q = 0.8 * (0.25, 0.75) + 0.2 off.
    got = seed_score(np.array([6.0, 2.0]), 10, np.array([0.25, 0.75]), 0.8)
    assert got == pytest.approx(0.5 * (abs(0.6 - 0.2) + abs(0.2 - 0.6) + 0.0))


def test_balanced_histogram_scores_the_hq_gap() -> None:
    # Modes exactly balanced with HQ fraction h: TV = |h - real_hq| (closed form).
    for h in (0.99, 0.67, 0.16):
        counts = np.full(8, N * h / 8)
        assert seed_score(counts, N, np.full(8, 1 / 8), REAL_HQ_2D) == \
            pytest.approx(abs(h - REAL_HQ_2D), abs=1e-12)


def test_unbalanced_modes_raise_the_score() -> None:
    ref = np.full(8, 1 / 8)
    balanced = np.full(8, 300.0)
    skewed = np.array([600.0, 600.0, 200.0, 200.0, 200.0, 200.0, 200.0, 200.0])  # same HQ
    s_bal = seed_score(balanced, 2400, ref, 1.0)
    s_skew = seed_score(skewed, 2400, ref, 1.0)
    assert s_bal == pytest.approx(0.0, abs=1e-15)
    # Two modes hold 1/4 each instead of 1/8: 1/4 of the mass must move.
    assert s_skew == pytest.approx(0.25)
    assert quality_metrics(skewed, 2400, ref, 1.0)[names.SEED_SUCCESS] == 1  # still held


def test_real_hq_fraction_of_a_2d_gaussian_is_one_minus_exp_minus_4_5() -> None:
    assert REAL_HQ_2D == pytest.approx(0.988891, abs=1e-6)


# ------------------------------------------------------------------------- closed-form cases
@pytest.mark.parametrize("dataset", ["ring8", "grid25"])
def test_the_true_mixture_succeeds_with_a_score_near_zero(dataset: str) -> None:
    d = _data(dataset)
    m = d.evaluate(d.sample(N, torch.Generator().manual_seed(11)))
    assert m[names.SEED_SUCCESS] == 1.0
    assert m[names.MODES_HELD] == d.num_modes
    # The floor is the N-sample histogram's noise: ~0.02 (8 modes), ~0.04 (25 modes).
    assert m[names.SEED_SCORE] < 0.07


def test_uniform_ring_fails_though_fid_and_coverage_look_perfect() -> None:
    d = _data("ring8")
    m = d.evaluate(_uniform_ring())
    assert m[names.MODES_COVERED] == 8  # the old rule saw 8/8 ...
    assert m[names.FID] < 3e-3  # ... and a raw-2D FID like a good run's (1.2e-3)
    assert m[names.SEED_SUCCESS] == 0.0
    assert m[names.SEED_SCORE] > 0.85


@pytest.mark.parametrize("case", ["sigma x5", "one mode", "7 of 8", "uniform grid square"])
def test_quality_failures(case: str) -> None:
    if case == "sigma x5":
        d, x = _mixture("ring8", sigma_scale=5.0)
    elif case == "one mode":
        d, x = _mixture("ring8", modes=1)
    elif case == "7 of 8":
        d, x = _mixture("ring8", modes=7)
    else:
        d = _data("grid25")
        x = torch.rand(N, 2, generator=torch.Generator().manual_seed(3)) * 10 - 5
    m = d.evaluate(x)
    assert m[names.SEED_SUCCESS] == 0.0, m
    assert m[names.SEED_SCORE] > 0.1


def test_score_rises_strictly_with_sigma() -> None:
    scores = [_data_eval("ring8", sigma_scale=s)[names.SEED_SCORE] for s in (1.0, 2.0, 5.0)]
    assert scores[0] < scores[1] < scores[2]
    # Balanced modes: the score is about the HQ gap, 1 - exp(-9 / (2 s^2)) vs the real 0.989.
    for s, got in zip((2.0, 5.0), scores[1:], strict=True):
        assert got == pytest.approx(REAL_HQ_2D - (1 - math.exp(-4.5 / s ** 2)), abs=0.04)


@pytest.mark.parametrize("dataset", ["ring8", "grid25"])
def test_score_rises_strictly_with_each_dropped_mode(dataset: str) -> None:
    k = _data(dataset).num_modes
    kept = range(k, 0, -1) if k <= 8 else (25, 24, 20, 12, 5, 1)
    scores = [_data_eval(dataset, modes=m)[names.SEED_SCORE] for m in kept]
    assert all(a < b for a, b in zip(scores, scores[1:], strict=False)), scores


def _data_eval(name: str, **kw) -> dict[str, float]:
    d, x = _mixture(name, **kw)
    return d.evaluate(x)


# ------------------------------------------------------------------------- the rule
def test_a_stray_sample_does_not_hold_a_mode() -> None:
    ref = np.full(8, 1 / 8)
    counts = np.array([300.0] * 7 + [2.0])  # the 8th mode has 2 of its ~263 expected
    m = quality_metrics(counts, 2500, ref, REAL_HQ_2D, DEFAULT_RULE)
    assert (m[names.MODES_COVERED], m[names.MODES_HELD]) == (8, 7)
    assert m[names.SEED_SUCCESS] == 0.0
    # The legacy rule (any HQ sample holds a mode, any HQ passes) calls it a success.
    assert quality_metrics(counts, 2500, ref, REAL_HQ_2D, LEGACY_RULE)[names.SEED_SUCCESS] == 1


def test_mode_share_threshold_is_a_quarter_of_the_expected_hq_share() -> None:
    ref = np.full(4, 1 / 4)
    n_hq = 400.0  # expected 100 per mode; a quarter is 25
    at = np.array([125.0, 125.0, 125.0, 25.0])
    below = np.array([125.0, 125.0, 125.5, 24.5])
    assert quality_metrics(at, 400, ref, 1.0)[names.MODES_HELD] == 4
    assert quality_metrics(below, 400, ref, 1.0)[names.MODES_HELD] == 3
    assert at.sum() == below.sum() == n_hq


def test_hq_threshold_is_relative_to_the_real_data() -> None:
    ref = np.full(2, 0.5)
    rule = SuccessRule(min_hq_ratio=0.5)
    # real HQ 0.8: the bar is 0.4 of all samples.
    assert quality_metrics(np.array([20.0, 20.0]), 100, ref, 0.8, rule)[names.SEED_SUCCESS] == 1
    assert quality_metrics(np.array([19.0, 20.0]), 100, ref, 0.8, rule)[names.SEED_SUCCESS] == 0


def test_legacy_rule_is_coverage_alone() -> None:
    ref = np.full(10, 0.1)
    counts = np.array([1.0] * 9 + [0.0])  # 9 of 10 modes with one sample each, HQ 0.009%
    m = quality_metrics(counts, 100_000, ref, 1.0, LEGACY_RULE)
    assert m[names.SEED_SUCCESS] == 1.0  # 9 >= 0.9 * 10
    eight = np.array([1.0] * 8 + [0.0, 0.0])
    assert quality_metrics(eight, 100_000, ref, 1.0, LEGACY_RULE)[names.SEED_SUCCESS] == 0.0


def test_diverged_seeds_get_the_worst_quality() -> None:
    m = failed_metrics(8)
    assert m[names.SEED_SUCCESS] == 0.0 and m[names.SEED_SCORE] == 1.0
    assert m[names.MODES_HELD] == 0.0 and m[names.MODE_KL] == pytest.approx(math.log(8))


@pytest.mark.parametrize("bad", [{"min_coverage": 1.5}, {"min_hq_ratio": -0.1},
                                 {"min_mode_share": math.nan}, {"min_coverage": True},
                                 {"min_coverage": "0.9"}, {"min_hq": 0.5}, [0.5]])
def test_bad_rules_are_one_line_config_errors(bad) -> None:
    with pytest.raises(ConfigError) as e:
        rule_from_mapping(bad, where="'success'")
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


def test_rule_from_mapping_overrides_only_what_it_names() -> None:
    rule = rule_from_mapping({"min_hq_ratio": 0.7})
    assert rule == SuccessRule(min_hq_ratio=0.7)
    assert rule.min_coverage == DEFAULT_RULE.min_coverage
    assert rule_from_mapping(None) == DEFAULT_RULE
