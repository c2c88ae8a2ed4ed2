"""The sweep objective: failed seeds first, then the median FID; never NaN."""

from __future__ import annotations

import math

from sweeper import objective
from trainers import names


def seed(modes=8, fid=0.01, diverged=0.0):
    m = {names.NUM_MODES: 8.0, names.MODES_COVERED: float(modes), names.DIVERGED: diverged,
         names.MODE_KL: 0.1, names.HQ_FRACTION: 0.5}
    if fid is not None:
        m[names.FID] = fid
    return m


def test_all_good_seeds_objective_is_squashed_median_fid():
    agg = objective.aggregate([seed(fid=0.01), seed(fid=0.03), seed(fid=0.02)])
    assert agg[names.FAILED_SEEDS] == 0
    assert agg[names.SUCCESS_RATE] == 1.0
    assert math.isclose(agg[names.RUNNING_OBJECTIVE], 0.02 / 1.02)
    assert math.isclose(agg[objective.FID_MEDIAN], 0.02)


def test_one_failed_seed_always_loses_to_none():
    stable = objective.aggregate([seed(fid=50.0)] * 3)  # poor but stable
    lucky = objective.aggregate([seed(fid=1e-4), seed(fid=1e-4), seed(modes=3, fid=1e-4)])
    assert lucky[names.FAILED_SEEDS] == 1
    assert stable[names.RUNNING_OBJECTIVE] < lucky[names.RUNNING_OBJECTIVE]


def test_collapse_threshold_is_coverage_fraction():
    assert not objective.seed_failed(seed(modes=8))
    assert objective.seed_failed(seed(modes=7))  # 7 < 0.9 * 8
    big = {names.NUM_MODES: 1000.0, names.MODES_COVERED: 900.0}
    assert not objective.seed_failed(big)
    assert objective.seed_failed({**big, names.MODES_COVERED: 899.0})


def test_diverged_seeds_are_failures_and_never_nan():
    agg = objective.aggregate([seed(modes=0, fid=None, diverged=1.0)] * 3)
    assert agg[names.FAILED_SEEDS] == 3
    assert agg[objective.DIVERGED_SEEDS] == 3
    assert agg[names.RUNNING_OBJECTIVE] == 4.0  # 3 failures + squashed inf FID (1)
    assert objective.FID_MEDIAN not in agg
    assert all(not math.isnan(v) for v in agg.values())
    mixed = objective.aggregate([seed(), seed(modes=0, fid=None, diverged=1.0), seed()])
    assert mixed[names.FAILED_SEEDS] == 1 and math.isfinite(mixed[names.RUNNING_OBJECTIVE])
