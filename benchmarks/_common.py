"""What several benchmark scripts share: the machine header and mean +- s.e."""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_header(extra: str = "") -> str:
    """One line on what the numbers were measured on (CPUs usable, model, Python, torch)."""
    import torch

    line = (f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
            f"{cpu_model()}, Python {platform.python_version()}, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads by default")
    return f"{line}; {extra}" if extra else line


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error over the non-NaN values (s.e. 0 for one; NaN mean for none)."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    m = statistics.fmean(vals)
    return m, (statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else 0.0)


def mean_se(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """'mean ± s.e.' over seeds or repeats ('mean' alone for one value, '–' for none)."""
    m, se = mean_and_se(values)
    if math.isnan(m):
        return "–"
    n = sum(not math.isnan(v) for v in values)
    return fmt.format(m) if n == 1 else f"{fmt.format(m)} ± {fmt.format(se)}"


# Ops that read a device tensor on the host: each is a host-device synchronisation on a GPU
# (`nonzero` is what boolean-mask indexing and `torch.where(cond)` run).
SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero",
            "aten::equal", "aten::masked_select", "aten::unique", "aten::_unique2")


def ops_per_step(members, steps: int = 2) -> tuple[float, dict[str, int]]:
    """(top-level aten ops per generator step, count of host-reading ops) over `steps` more
    steps of `members` (anything with `step` and `train_until`).

    A top-level aten op (no aten parent) is about one kernel launch on a GPU. Counted on the
    CPU with the profiler: what a GPU would feel, measured where there is no GPU."""
    from torch.profiler import ProfilerActivity, profile

    start = members.step
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        members.train_until(start + steps)
    events = list(prof.events())
    ops = sum(1 for e in events if e.name.startswith("aten::") and e.cpu_parent is None)
    syncs: dict[str, int] = {}
    for e in events:
        if e.name in SYNC_OPS:
            syncs[e.name] = syncs.get(e.name, 0) + 1
    return ops / steps, syncs
