"""What a sweep minimises: one number per setting, aggregated over its seeds.

    objective = failed_seeds + m / (1 + m),   m = median FID over the seeds

A seed *fails* when it diverged or collapsed (covered fewer than COVERAGE_THRESHOLD of the
modes); a diverged seed has no FID and counts as FID = inf in the median (term -> 1).
Because m / (1 + m) < 1, the objective orders settings lexicographically: fewer failed seeds
always wins, and the median FID breaks ties. That is the product's question -- stable first,
then good -- and it needs no dataset-specific FID scale. TPE is rank-based, so the squashing
does not distort what it learns.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from trainers import names

# Aggregate names logged on a trial (setting) run, next to the per-seed runs.
FID_MEDIAN = "fid_median"
MODE_KL_MEDIAN = "mode_kl_median"
MODES_COVERED_MEAN = "modes_covered_mean"
HQ_FRACTION_MEAN = "hq_fraction_mean"
DIVERGED_SEEDS = "diverged_seeds"


def seed_failed(m: dict[str, float]) -> bool:
    """Diverged, or collapsed: fewer than COVERAGE_THRESHOLD * K modes covered."""
    if m.get(names.DIVERGED, 0.0) >= 1:
        return True
    k = m.get(names.NUM_MODES)
    covered = m.get(names.MODES_COVERED)
    if k is None or covered is None:
        return True  # nothing measured: not a success
    return covered < names.COVERAGE_THRESHOLD * k


def seed_fid(m: dict[str, float]) -> float:
    """The seed's FID, or inf when it has none (diverged runs report no FID)."""
    v = m.get(names.FID)
    return float(v) if v is not None and math.isfinite(v) and not m.get(names.DIVERGED) \
        else math.inf


def aggregate(per_seed: Sequence[dict[str, float]]) -> dict[str, float]:
    """Setting-level metrics from the latest metrics of each seed. Never NaN."""
    k = len(per_seed)
    failed = sum(seed_failed(m) for m in per_seed)
    fids = [seed_fid(m) for m in per_seed]
    med = statistics.median(fids)
    squashed = 1.0 if math.isinf(med) else med / (1.0 + med)
    out = {
        names.FAILED_SEEDS: float(failed),
        names.SUCCESS_RATE: (k - failed) / k,
        DIVERGED_SEEDS: float(sum(m.get(names.DIVERGED, 0.0) >= 1 for m in per_seed)),
        names.RUNNING_OBJECTIVE: failed + squashed,
    }
    if math.isfinite(med):
        out[FID_MEDIAN] = med
    kls = [m[names.MODE_KL] for m in per_seed if names.MODE_KL in m]
    if kls:
        out[MODE_KL_MEDIAN] = statistics.median(kls)
    covered = [m.get(names.MODES_COVERED, 0.0) for m in per_seed]
    out[MODES_COVERED_MEAN] = sum(covered) / k
    out[HQ_FRACTION_MEAN] = sum(m.get(names.HQ_FRACTION, 0.0) for m in per_seed) / k
    return out
