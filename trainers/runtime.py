"""Where training runs: device choice, torch threads, and atomic checkpoint files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present (Ray sets CUDA_VISIBLE_DEVICES per trial), else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def set_threads(n: int | None = None) -> int:
    """Use as many torch threads as CPUs this process may run on (or n, e.g. Ray's grant)."""
    n = n or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint atomically (a crash mid-write never leaves a torn file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
