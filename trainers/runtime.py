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
    device = torch.device(name)
    _check_available(device)
    return device


def _check_available(device: torch.device) -> None:
    """One line, not a CUDA traceback deep in training, when the device is not here."""
    from trainers.config import ConfigError  # late: config is the leaf module

    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= n:
            raise ConfigError(f"device {str(device)!r} is not available here ({n} CUDA "
                              "GPU(s) visible); use --device cpu or auto")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if not (mps and mps.is_available()):
            raise ConfigError("device 'mps' is not available here; use --device cpu or auto")


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
