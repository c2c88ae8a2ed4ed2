"""Stability analysis on hand-built seeds: intervals, aggregation, ranking, binning, NaNs."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sweeper.analyse import stability
from sweeper.analyse.stability import Setting
from trainers import names


def seed(modes=8, fid=0.1, kl=0.05, diverged=0.0, hq=0.5, score=None):
    """A seed's final metrics; it succeeds (as the trainer's rule would say) with 8/8 held."""
    m = {names.NUM_MODES: 8.0, names.MODES_COVERED: modes, names.DIVERGED: diverged,
         names.MODE_KL: kl, names.HQ_FRACTION: hq, names.STEP: 100.0,
         names.MODES_HELD: modes, names.SEED_SUCCESS: float(modes >= 8 and not diverged),
         names.SEED_SCORE: fid if score is None else score}
    if fid is not None:
        m[names.FID] = fid
    return m


DIVERGED = {names.DIVERGED: 1.0, names.MODES_COVERED: 0.0, names.NUM_MODES: 8.0,
            names.HQ_FRACTION: 0.0, names.MODE_KL: math.log(8), names.MODES_HELD: 0.0,
            names.SEED_SCORE: 1.0, names.SEED_SUCCESS: 0.0}


def setting(label, seeds, complete=True, **params):
    return Setting(key=label, label=label, params={"loss": "wgan-gp", **params}, seeds=seeds,
                   complete=complete)


# ------------------------------------------------------------------------- intervals
@pytest.mark.parametrize("k, n, lo, hi", [
    (3, 3, 0.43850, 1.0),  # p = 1: centre 0.71925, half-width 0.28075
    (0, 3, 0.0, 0.56150),
    (5, 10, 0.23659, 0.76341),
    (10, 10, 0.72247, 1.0),
    (0, 0, 0.0, 1.0),
])
def test_wilson_interval_matches_hand_computation(k, n, lo, hi):
    got = stability.wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-5)


def test_bootstrap_of_three_values_spans_the_possible_medians():
    # A resampled median is 1 with probability 7/27 (two or three draws of 1) > 2.5%, and
    # 3 likewise: the 95% interval must be exactly [1, 3].
    assert stability.bootstrap_ci([1.0, 2.0, 3.0]) == (1.0, 3.0)
    # Success indicators 1, 1, 0: all-zero resamples have probability 1/27 > 2.5%.
    assert stability.bootstrap_ci([1.0, 1.0, 0.0], np.mean) == (0.0, 1.0)
    assert stability.bootstrap_ci([0.7]) == (0.7, 0.7)


def test_bootstrap_is_reproducible_and_handles_inf_without_nan():
    x = [0.3, 0.1, 0.9, 0.4, 0.2, 0.8, 0.5]
    assert stability.bootstrap_ci(x) == stability.bootstrap_ci(x)
    lo, hi = stability.bootstrap_ci(x)
    assert min(x) <= lo <= statistics.median(x) <= hi <= max(x)
    # A median of (1, inf, inf) resamples to 1 (p = 7/27) or inf: never NaN.
    assert stability.bootstrap_ci([1.0, math.inf, math.inf]) == (1.0, math.inf)


def test_bootstrap_equals_direct_percentile_computation():
    x = np.array([0.5, 0.1, 0.7, 0.2, 0.9])
    rng = np.random.default_rng(stability.BOOTSTRAP_SEED)
    meds = np.sort(np.median(x[rng.integers(0, 5, size=(stability.N_BOOT, 5))], axis=1))
    n = stability.N_BOOT
    assert stability.bootstrap_ci(x) == (meds[math.floor(0.025 * (n - 1))],
                                         meds[math.ceil(0.975 * (n - 1))])


@given(st.integers(0, 50), st.integers(1, 50))
def test_wilson_contains_the_rate_and_stays_in_unit_interval(k, n):
    k = min(k, n)
    lo, hi = stability.wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


# ------------------------------------------------------------------------- one setting
def test_setting_stats_by_hand():
    seeds = [seed(fid=0.1, kl=0.01), seed(fid=0.3, kl=0.03), seed(modes=3, fid=0.2, kl=0.9),
             DIVERGED]
    s = stability.setting_stats(setting("a", seeds))
    assert (s.n_seeds, s.successes, s.diverged) == (4, 2, 1)
    assert s.success_rate == 0.5
    assert s.fid_median == pytest.approx(0.25)  # median of 0.1, 0.2, 0.3, inf
    assert s.fid_range == (0.1, math.inf)
    assert s.mode_kl_median == pytest.approx((0.03 + 0.9) / 2)
    assert s.mode_kl_range == (0.01, math.log(8))
    assert s.modes_covered_mean == pytest.approx((8 + 8 + 3 + 0) / 4)
    assert s.modes_covered_min == 0.0 and s.num_modes == 8.0
    assert s.success_wilson == stability.wilson_interval(2, 4)
    assert s.ranked and s.flags == ()
    json.dumps(s.to_dict(), allow_nan=False)  # inf became null


@pytest.mark.parametrize("bad", [
    {names.MODES_COVERED: math.nan},
    {names.FID: math.nan},
    {names.MODE_KL: math.inf},
    {names.MODES_COVERED: "nan"},
    {names.NUM_MODES: None},
])
def test_nan_or_garbage_in_a_headline_metric_is_a_failure(bad):
    s = stability.setting_stats(setting("a", [seed(), seed(), {**seed(), **bad}]))
    assert s.successes == 2 and s.n_seeds == 3
    assert math.isfinite(s.fid_median)


def test_missing_and_empty_seeds_are_failures_and_never_crash():
    s = stability.setting_stats(setting("a", [{}, {}, {}]))
    assert s.successes == 0 and s.fid_median == math.inf and s.fid_ci == (math.inf, math.inf)
    assert math.isnan(s.mode_kl_median)
    json.dumps(s.to_dict(), allow_nan=False)
    empty = stability.setting_stats(setting("b", []))
    assert empty.n_seeds == 0 and empty.flags == (stability.FLAG_FEW_SEEDS,)


def test_flags_for_few_seeds_and_partial_budget():
    few = stability.setting_stats(setting("few", [seed(), seed()]))
    partial = stability.setting_stats(setting("part", [seed()] * 3, complete=False))
    assert few.flags == (stability.FLAG_FEW_SEEDS,)
    assert partial.flags == (stability.FLAG_PARTIAL,)
    assert stability.setting_stats(setting("x", [seed()] * 2), min_seeds=2).ranked


# ------------------------------------------------------------------------- ranking
def test_rank_wilson_lower_bound_first_then_median_fid():
    stats = [stability.setting_stats(s) for s in [
        setting("A", [seed(fid=0.5)] * 3),  # 3/3, LB 0.44
        setting("B", [seed(fid=0.2)] * 3),  # 3/3, LB 0.44, better FID
        setting("C", [seed(fid=0.01)] * 2 + [seed(modes=2)]),  # 2/3, LB 0.21, best FID
        setting("D", [seed(fid=0.9)] * 5),  # 5/5, LB 0.57: more evidence ranks first
        setting("E", [seed(fid=0.001)] * 2),  # flagged: too few seeds
        setting("F", [seed(fid=0.001)] * 3, complete=False),  # flagged: stopped early
        setting("G", [DIVERGED] * 3),  # 0/3
    ]]
    ranked, flagged = stability.rank(stats)
    assert [s.label for s in ranked] == ["D", "B", "A", "C", "G"]
    assert [s.label for s in flagged] == ["F", "E"]  # F: LB 0.44 beats E: LB 0.34


def test_objective_picks_the_tie_breaker_between_equally_stable_settings():
    sets = [setting("sharp", [seed(fid=0.02, score=0.05)] * 3),  # modes learned well
            setting("blurred", [seed(fid=0.001, score=0.8)] * 3)]  # a better FID, poor quality
    by_quality, _ = stability.rank(stability.setting_stats(s) for s in sets)
    by_fid, _ = stability.rank(stability.setting_stats(s, objective="fid") for s in sets)
    assert [s.label for s in by_quality] == ["sharp", "blurred"]
    assert [s.label for s in by_fid] == ["blurred", "sharp"]
    top = by_quality[0]
    assert top.score_median == 0.05 and top.score_range == (0.05, 0.05)
    assert top.modes_held_mean == 8 and top.tie_break == 0.05


def test_seeds_without_a_verdict_are_counted_as_failures_and_reported():
    old = {names.NUM_MODES: 8.0, names.MODES_COVERED: 8.0, names.FID: 0.01,
           names.HQ_FRACTION: 0.9, names.MODE_KL: 0.0}
    sets = [setting("old", [old] * 3), setting("new", [seed()] * 3),
            setting("div", [DIVERGED] * 3)]
    assert stability.setting_stats(sets[0]).successes == 0
    assert stability.missing_quality(sets) == 3  # diverged seeds are judged, not missing


def test_varied_params_ignores_defaults_of_other_losses():
    sets = [Setting("a", "a", {"loss": "wgan-gp", "gp_lambda": 1.0, "clip_value": 0.01,
                               "n_critic": 5}, []),
            Setting("b", "b", {"loss": "wgan-gp", "gp_lambda": 10.0, "clip_value": 0.01,
                               "n_critic": 5}, []),
            Setting("c", "c", {"loss": "wgan-clip", "gp_lambda": 10.0, "clip_value": 0.01,
                               "n_critic": 5}, [])]
    assert stability.varied_params(sets) == ["gp_lambda", "loss"]
    assert stability.varied_params(sets, ["n_critic", "gp_lambda"]) == ["gp_lambda"]


# ------------------------------------------------------------------------- regions
def test_bins_integer_levels_log_and_linear():
    b = stability.make_bins("n_critic", [1, 5, 3, 5])
    assert b.labels == ("1", "3", "5") and [b.index(v) for v in (1, 3, 5)] == [0, 1, 2]
    lam = stability.make_bins("gp_lambda", [0.2, 1.0, 10.0, 99.0])
    assert lam.log and lam.edges == pytest.approx((0.1, 1.0, 10.0, 100.0))  # decades
    assert lam.labels == ("0.1-1", "1-10", "10-100")
    assert [lam.index(v) for v in (0.2, 0.5, 1.0, 99.0, 100.0)] == [0, 0, 1, 2, 2]
    lr = stability.make_bins("lr_d", [1e-3, 2e-3, 1e-2])
    assert lr.edges == pytest.approx((1e-3, 1e-2)) and [lr.index(v) for v in (1e-3, 1e-2)] == [0, 0]
    lin = stability.make_bins("beta1", [0.0, 0.2, 0.5, 0.8], n_bins=2)
    assert not lin.log and lin.edges == (0.0, 0.4, 0.8)
    assert [lin.index(v) for v in (0.0, 0.2, 0.5, 0.8)] == [0, 0, 1, 1]


def test_region_grid_pools_seeds_per_cell_like_a_direct_count():
    sets = [setting("a", [seed(fid=0.1), seed(modes=1)], gp_lambda=0.1, n_critic=1),
            setting("b", [seed(fid=0.3)] * 3, gp_lambda=0.2, n_critic=1),
            setting("c", [DIVERGED, seed(fid=0.5)], gp_lambda=100.0, n_critic=5),
            setting("d", [seed()] * 3, gp_lambda=50.0, n_critic=5, complete=False),  # left out
            Setting("e", "e", {"loss": "bce-ns", "gp_lambda": 10.0, "n_critic": 1},
                    [seed()] * 3)]  # gp_lambda does not apply to bce-ns: left out
    g = stability.region_grid(sets, "gp_lambda", "n_critic")
    assert g is not None and g.x.log and g.y.labels == ("1", "5")
    # Direct computation: lambda's decade bins are [0.1, 1), [1, 10), [10, 100].
    assert g.seeds.tolist() == [[5, 0, 0], [0, 0, 2]]
    assert g.successes.tolist() == [[4, 0, 0], [0, 0, 1]]
    assert g.settings.tolist() == [[2, 0, 0], [0, 0, 1]]
    assert g.success_rate[0, 0] == pytest.approx(0.8) and math.isnan(g.success_rate[0, 1])
    assert g.fid_median[0, 0] == pytest.approx(statistics.median([0.1, 0.1, 0.3, 0.3, 0.3]))
    assert g.fid_median[1, 2] == math.inf  # median of (inf, 0.5)
    assert g.score_median[0, 0] == pytest.approx(0.3)  # median of 0.1, 0.1, 0.3, 0.3, 0.3
    assert g.score_median[1, 2] == pytest.approx(0.75)  # diverged counts as 1: (1 + 0.5) / 2
    assert g.hq_mean[0, 0] == pytest.approx(0.5) and g.hq_mean[1, 2] == pytest.approx(0.25)
    assert math.isnan(g.score_median[0, 1]) and math.isnan(g.hq_mean[0, 1])
    json.dumps(g.to_dict(), allow_nan=False)


def test_region_grid_skips_params_the_sweep_did_not_vary():
    sets = [setting("a", [seed()] * 3, gp_lambda=1.0, n_critic=5),
            setting("b", [seed()] * 3, gp_lambda=10.0, n_critic=5)]
    assert stability.region_grid(sets, "gp_lambda", "n_critic") is None
    assert "did not vary n_critic" in stability.region_skip_reason(sets, "gp_lambda",
                                                                    "n_critic")
    assert "uses both" in stability.region_skip_reason(sets, "lr_d", "n_critic")


def test_definitions_state_the_ranking_rule_with_numbers():
    text = stability.definitions_markdown()
    assert "Wilson lower bound" in text and "then the median score" in text
    assert f"fewer than {stability.MIN_SEEDS} seeds" in text and "90%" in text
    assert "0.25 of a mode's expected HQ share" in text and "0.5 x the real data's" in text
    assert "then the median FID" in stability.definitions_markdown(objective="fid")
