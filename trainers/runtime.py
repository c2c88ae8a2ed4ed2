"""Where training runs: device choice, torch threads, and atomic checkpoint files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from trainers.errors import ConfigError
from trainers.files import available_memory, check_input_file


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


def _what(path: str | Path) -> str:
    return str(path)[:200]


def read_checkpoint(path: str | Path, what: str = "gan-sweeper checkpoint",
                    fix: str = "give a file written by `sweeper train --checkpoint`"
                    ) -> dict[str, Any]:
    """A checkpoint's state dict, read without running anything in the file.

    `weights_only=True`: torch's restricted unpickler takes tensors, numbers, strings and
    plain containers only, so a file from a colleague or the internet cannot run code as
    whoever loads it (a full unpickler runs whatever the file names). What is not a regular
    file (a pipe would block forever), cannot be read or holds anything else is one line
    naming the file, as a ConfigError."""
    p = Path(path)
    # Read whole into memory (and the population built from it is as large again).
    check_input_file(p, what, max_bytes=available_memory() // 2, fix=fix)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip and torch each raise their own
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        if "weights_only" in msg or "Unsupported global" in msg:
            msg = "it holds Python objects beyond tensors and plain values, which are never " \
                  "loaded: a gan-sweeper checkpoint holds none"
        raise ConfigError(f"{_what(p)} is not a {what} ({msg}); {fix}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{_what(p)} is not a {what} (it holds a {type(state).__name__}, "
                          f"not a state dict); {fix}")
    return state


@contextmanager
def checkpoint_contents(path: str | Path,
                        fix: str = "give a file written by `sweeper train --checkpoint`"
                        ) -> Iterator[None]:
    """Rebuilding state read from `path`: a value of the wrong type, a missing key or a tensor
    of the wrong shape is one line naming the file, as a ConfigError."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"checkpoint {_what(path)}: {e}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        msg = " ".join(str(e).split())[:160]
        raise ConfigError(f"checkpoint {_what(path)} is damaged or not a gan-sweeper checkpoint "
                          f"({type(e).__name__}: {msg}); {fix}") from None
