"""Successive halving inside a fused trial: the ASHA rungs, applied to the settings of one
population instead of to separate Tune trials.

A fused trial trains P settings (x k seeds) as one population (`sweeper run --fuse P`). At
each rung (the step milestones Tune's ASHAScheduler would use for the same grace period,
reduction factor and budget) it ranks the settings still training by their running objective
and keeps the best 1/eta; the rest leave the population (`Population.keep`), so the steps
after a rung cost less. A setting cut at a rung ends like one ASHA stops: its MLflow runs are
tagged `stopped_early` at that step and Optuna records it PRUNED.

ASHA is asynchronous (a trial is judged against every result recorded at the rung so far);
inside one population all settings reach a rung together, so the cut is the synchronous one:
keep the best floor(n / eta), at least one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def rungs(steps: int, grace_fraction: float, reduction_factor: int) -> tuple[int, ...]:
    """The step milestones, smallest first: grace x eta^i below the budget, as Tune's
    ASHAScheduler places them (grace = max(1, steps x grace_fraction))."""
    grace = max(1, int(steps * grace_fraction))
    out, at = [], grace
    while at < steps:
        out.append(at)
        at *= reduction_factor
    return tuple(out)


def passed(milestones: Sequence[int], step: int) -> int:
    """How many milestones a population at `step` has reached."""
    return sum(m <= step for m in milestones)


def survivors(values: Sequence[float], eta: int) -> list[int]:
    """Indices (in their order) of the best floor(n / eta) values, at least one: lower is
    better, NaN is worst, ties go to the earlier setting."""
    n = len(values)
    keep = max(1, n // max(1, eta))
    order = sorted(range(n), key=lambda i: (math.isnan(values[i]), values[i], i))
    return sorted(order[:keep])
