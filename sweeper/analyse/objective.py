"""What a sweep minimises: one number per setting, aggregated over its seeds.

    objective = failed_seeds + m / (1 + m)  [+ TIE_WEIGHT * f / (1 + f) for quality]
    m = median seed_score over the seeds     (--objective quality, the default)
    m = median FID over the seeds            (--objective fid)
    f = median FID over the seeds

A seed *fails* when it diverged or does not pass the success rule (`seed_success`, judged by
the trainer with the sweep's `trainers.quality.SuccessRule`). A diverged seed has no FID and
the worst score: it counts as FID = inf, or score 1, in the median. Because m / (1 + m) < 1,
the objective orders settings lexicographically: fewer failed seeds always wins, and the
median breaks ties. That is the product's question -- stable first, then good -- and the same
squashing serves both tie-breakers (FID has no dataset-independent scale; the score is in
[0, 1]). TPE is rank-based, so the squashing does not distort what it learns.

The small FID term under `quality` breaks exact ties of the score. They are common where
early stopping decides: before any sample is HQ, every setting scores 1 - real_hq off-mode
mass alone (0.989 on the 2D mixtures), and without it ASHA could stop nothing and TPE would
learn nothing from such trials, though FID still tells "near the data" from "far off". It
moves the objective by at most TIE_WEIGHT = 0.001, far below the score's own sampling noise
(~0.02 at N = 2,500): it can reorder only settings whose median scores differ by less than
about 0.0015.

`fid` remains for datasets without known modes, and to re-rank a sweep as FID would. With
`--min-mode-share 0 --min-hq-ratio 0 --objective fid` a sweep optimises exactly what
gan-sweeper did before the score existed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainers import names
from trainers.quality import SuccessRule, rule_from_mapping

OBJECTIVES = ("quality", "fid")
DEFAULT_OBJECTIVE = "quality"
# Weight of the FID term that breaks exact score ties under `quality` (module docstring).
TIE_WEIGHT = 1e-3

# Aggregate names logged on a trial (setting) run, next to the per-seed runs.
FID_MEDIAN = "fid_median"
SCORE_MEDIAN = "seed_score_median"
MODE_KL_MEDIAN = "mode_kl_median"
MODES_COVERED_MEAN = "modes_covered_mean"
MODES_HELD_MEAN = "modes_held_mean"
HQ_FRACTION_MEAN = "hq_fraction_mean"
COVERAGE_MEAN = "coverage_mean"  # precision/coverage: every dataset, the verdict of those
PRECISION_MEAN = "precision_mean"  # without labelled modes (trainers/quality.py)
DIVERGED_SEEDS = "diverged_seeds"


# The success rule is recorded on a sweep's parent run (and a single run) as these params.
RULE_PARAM_PREFIX = "success."


def rule_params(rule: SuccessRule) -> dict[str, float]:
    """The success rule as run params (`success.min_coverage`, ...)."""
    return {RULE_PARAM_PREFIX + k: v for k, v in rule.to_dict().items()}


def rule_from_params(params: Mapping[str, str]) -> SuccessRule | None:
    """The rule a run recorded, or None if it recorded none (logged before the rule existed)."""
    raw = {k[len(RULE_PARAM_PREFIX):]: v for k, v in params.items()
           if k.startswith(RULE_PARAM_PREFIX)}
    if not raw:
        return None
    return rule_from_mapping({k: float(v) for k, v in raw.items()}, where="the run's params")


def check_objective(name: str) -> str:
    from sweeper.errors import UserError

    if name not in OBJECTIVES:
        raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}, got "
                        f"{str(name)[:40]!r}")
    return name


def _finite(m: Mapping[str, Any], key: str) -> float | None:
    try:
        v = float(m[key])
    except (KeyError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def seed_failed(m: Mapping[str, Any]) -> bool:
    """Diverged, or not a success under the rule the trainer judged it by. A seed without a
    `seed_success` (nothing measured, or logged before the rule existed) is not a success."""
    if (_finite(m, names.DIVERGED) or 0.0) >= 1:
        return True
    return (_finite(m, names.SEED_SUCCESS) or 0.0) < 1


def seed_fid(m: Mapping[str, Any]) -> float:
    """The seed's FID, or inf when it has none (diverged runs report no FID)."""
    v = _finite(m, names.FID)
    return v if v is not None and not _finite(m, names.DIVERGED) else math.inf


def seed_score(m: Mapping[str, Any]) -> float:
    """The seed's quality score, or 1 (the worst) when it has none."""
    v = _finite(m, names.SEED_SCORE)
    return v if v is not None and not _finite(m, names.DIVERGED) else 1.0


def squash(m: float) -> float:
    """m / (1 + m) in [0, 1); inf -> 1."""
    return 1.0 if math.isinf(m) else m / (1.0 + m)


@dataclass(frozen=True)
class SeedColumns:
    """The per-seed values that both the sweep objective (`aggregate`) and the stability
    analysis (`stability.setting_stats`) summarise, read once, in seed order."""

    failed: list[bool]
    fids: list[float]  # inf for a seed without one
    scores: list[float]  # 1 (the worst) for a seed without one
    kls: list[float]  # only the seeds that report a mode KL
    covered: list[float]
    held: list[float]
    hq: list[float]
    coverage: list[float]  # empty when no seed reports it (runs logged before it existed)
    precision: list[float]
    diverged: int

    @classmethod
    def of(cls, per_seed: Sequence[Mapping[str, Any]]) -> SeedColumns:
        return cls(failed=[seed_failed(m) for m in per_seed],
                   fids=[seed_fid(m) for m in per_seed],
                   scores=[seed_score(m) for m in per_seed],
                   kls=[m[names.MODE_KL] for m in per_seed if names.MODE_KL in m],
                   covered=[m.get(names.MODES_COVERED, 0.0) for m in per_seed],
                   held=[m.get(names.MODES_HELD, 0.0) for m in per_seed],
                   hq=[m.get(names.HQ_FRACTION, 0.0) for m in per_seed],
                   **{key: [m.get(name, 0.0) for m in per_seed] if any(name in m for m in per_seed)
                      else [] for key, name in (("coverage", names.COVERAGE),
                                                ("precision", names.PRECISION))},
                   diverged=sum(m.get(names.DIVERGED, 0.0) >= 1 for m in per_seed))


def mean(values: Sequence[float]) -> float:
    """The mean, 0 for no values (a setting with no seeds measured holds nothing)."""
    return sum(values) / len(values) if values else 0.0


def aggregate(per_seed: Sequence[Mapping[str, Any]],
              objective: str = DEFAULT_OBJECTIVE) -> dict[str, float]:
    """Setting-level metrics from the latest metrics of each seed. Never NaN."""
    c = SeedColumns.of(per_seed)
    k = len(per_seed)
    failed = sum(c.failed)
    fid_med = statistics.median(c.fids)
    score_med = statistics.median(c.scores)
    tie = squash(fid_med) if objective == "fid" else squash(score_med) + TIE_WEIGHT * squash(
        fid_med)
    out = {
        names.FAILED_SEEDS: float(failed),
        names.SUCCESS_RATE: (k - failed) / k,
        DIVERGED_SEEDS: float(c.diverged),
        names.RUNNING_OBJECTIVE: failed + tie,
        SCORE_MEDIAN: score_med,
    }
    # Data without labelled modes report none (trainers/quality.py): no made-up zeros.
    if any(names.NUM_MODES in m for m in per_seed) or not c.coverage:
        out.update({MODES_COVERED_MEAN: mean(c.covered), MODES_HELD_MEAN: mean(c.held),
                    HQ_FRACTION_MEAN: mean(c.hq)})
    if math.isfinite(fid_med):
        out[FID_MEDIAN] = fid_med
    if c.kls:
        out[MODE_KL_MEDIAN] = statistics.median(c.kls)
    if c.coverage:
        out[COVERAGE_MEAN], out[PRECISION_MEAN] = mean(c.coverage), mean(c.precision)
    return out
