"""What several benchmark scripts share (imported after their `sys.path` line)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_se(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """'mean ± s.e.' over seeds ('mean' alone for one value, '–' for none)."""
    if not values:
        return "–"
    m = statistics.fmean(values)
    if len(values) == 1:
        return fmt.format(m)
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{fmt.format(m)} ± {fmt.format(se)}"
