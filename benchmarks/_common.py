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


def mean_se(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """'mean ± s.e.' over seeds ('mean' alone for one value, '–' for none)."""
    if not values:
        return "–"
    m = statistics.fmean(values)
    if len(values) == 1:
        return fmt.format(m)
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{fmt.format(m)} ± {fmt.format(se)}"
