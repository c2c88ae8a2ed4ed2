"""The sweep objective: failed seeds first, then the median score (or FID); never NaN."""

from __future__ import annotations

import math

import pytest

from sweeper.analyse import objective
from trainers import names


def seed(modes=8, fid=0.01, diverged=0.0, score=0.05):
    """A seed's final metrics; it succeeds (as the trainer's rule would say) with 8/8 held."""
    m = {names.NUM_MODES: 8.0, names.MODES_COVERED: float(modes), names.DIVERGED: diverged,
         names.MODE_KL: 0.1, names.HQ_FRACTION: 0.5, names.MODES_HELD: float(modes),
         names.SEED_SCORE: 1.0 if diverged else score,
         names.SEED_SUCCESS: float(modes >= 8 and not diverged)}
    if fid is not None:
        m[names.FID] = fid
    return m


def test_all_good_seeds_objective_is_squashed_median_score():
    agg = objective.aggregate([seed(score=0.1), seed(score=0.3), seed(score=0.2)])
    assert agg[names.FAILED_SEEDS] == 0
    assert agg[names.SUCCESS_RATE] == 1.0
    tie = objective.TIE_WEIGHT * 0.01 / 1.01  # the FID term (median FID 0.01)
    assert math.isclose(agg[names.RUNNING_OBJECTIVE], 0.2 / 1.2 + tie)
    assert math.isclose(agg[objective.SCORE_MEDIAN], 0.2)


def test_fid_objective_is_squashed_median_fid():
    agg = objective.aggregate([seed(fid=0.01), seed(fid=0.03), seed(fid=0.02)], "fid")
    assert agg[names.FAILED_SEEDS] == 0
    assert math.isclose(agg[names.RUNNING_OBJECTIVE], 0.02 / 1.02)
    assert math.isclose(agg[objective.FID_MEDIAN], 0.02)


@pytest.mark.parametrize("which", objective.OBJECTIVES)
def test_one_failed_seed_always_loses_to_none(which):
    stable = objective.aggregate([seed(fid=50.0, score=0.99)] * 3, which)  # poor but stable
    lucky = objective.aggregate([seed(fid=1e-4, score=0.0), seed(fid=1e-4, score=0.0),
                                 seed(modes=3, fid=1e-4, score=0.0)], which)
    assert lucky[names.FAILED_SEEDS] == 1
    assert stable[names.RUNNING_OBJECTIVE] < lucky[names.RUNNING_OBJECTIVE]


def test_fid_breaks_exact_score_ties_but_never_a_real_score_difference():
    # No sample HQ yet: every setting scores the same; the nearer one (lower FID) ranks first.
    near = objective.aggregate([seed(modes=0, score=0.989, fid=0.5)] * 3)
    far = objective.aggregate([seed(modes=0, score=0.989, fid=50.0)] * 3)
    assert near[names.RUNNING_OBJECTIVE] < far[names.RUNNING_OBJECTIVE]
    # A score better by 0.002 (a tenth of its sampling noise) beats any FID difference.
    better = objective.aggregate([seed(score=0.100, fid=math.inf)] * 3)
    worse = objective.aggregate([seed(score=0.102, fid=0.0)] * 3)
    assert better[names.RUNNING_OBJECTIVE] < worse[names.RUNNING_OBJECTIVE]


def test_failure_is_the_trainers_seed_success():
    assert not objective.seed_failed(seed(modes=8))
    assert objective.seed_failed(seed(modes=7))
    # The rule's verdict, not coverage, decides: 8/8 covered but judged a failure.
    assert objective.seed_failed({**seed(modes=8), names.SEED_SUCCESS: 0.0})
    # No verdict at all (logged before the rule existed, or nothing measured): a failure.
    old = {names.NUM_MODES: 8.0, names.MODES_COVERED: 8.0, names.FID: 0.01}
    assert objective.seed_failed(old) and objective.seed_failed({})
    assert objective.seed_failed({**seed(), names.SEED_SUCCESS: math.nan})


def test_diverged_seeds_are_failures_and_never_nan():
    agg = objective.aggregate([seed(modes=0, fid=None, diverged=1.0)] * 3)
    assert agg[names.FAILED_SEEDS] == 3
    assert agg[objective.DIVERGED_SEEDS] == 3
    # 3 failures + squashed worst score (1/2) + the FID term at inf FID (TIE_WEIGHT)
    assert agg[names.RUNNING_OBJECTIVE] == 3.5 + objective.TIE_WEIGHT
    assert objective.aggregate([seed(modes=0, fid=None, diverged=1.0)] * 3, "fid")[
        names.RUNNING_OBJECTIVE] == 4.0  # 3 failures + squashed inf FID (1)
    assert objective.FID_MEDIAN not in agg
    assert all(not math.isnan(v) for v in agg.values())
    mixed = objective.aggregate([seed(), seed(modes=0, fid=None, diverged=1.0), seed()])
    assert mixed[names.FAILED_SEEDS] == 1 and math.isfinite(mixed[names.RUNNING_OBJECTIVE])


def test_unknown_objective_is_a_one_line_user_error():
    from sweeper.errors import UserError

    with pytest.raises(UserError, match="--objective must be one of quality, fid"):
        objective.check_objective("hq")
