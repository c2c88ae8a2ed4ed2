"""Input files checked for what they are before they are read (reliability round 3, row 9).

A named pipe with no writer blocks a reader forever, a device never ends, and a file larger
than memory takes the machine down when read whole: each is one line (a `ConfigError`)
naming the file and the limit, found with `os.stat` alone, before any byte is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trainers.errors import ConfigError

# Text inputs (configs, search spaces) are a few hundred bytes; anything near this is not one.
TEXT_LIMIT = 1 << 20


def _short(path: str | Path) -> str:
    return str(path)[:200]


def available_memory() -> int:
    """Bytes of RAM this process could still use: what psutil calls available, or less
    where a container's memory limit (cgroup v2 or v1) leaves less."""
    import psutil

    return min(int(psutil.virtual_memory().available), _cgroup_room())


def _cgroup_room() -> int:
    """Limit minus usage of this process's memory cgroup; very large when there is none."""
    candidates = [("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                   "/sys/fs/cgroup/memory/memory.usage_in_bytes")]
    for limit_file, usage_file in candidates:
        try:
            limit = Path(limit_file).read_text().strip()
            if limit == "max":
                continue
            return int(limit) - int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
    return 1 << 62


def check_input_file(path: str | Path, what: str, *, max_bytes: int | None = None,
                     fix: str = "") -> int:
    """The file's size in bytes, once it is known to be a regular file of at most
    `max_bytes`; otherwise one line naming it (and `fix`)."""
    p = Path(path)
    tail = f"; {fix}" if fix else ""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"cannot read {what} {_short(p)}: it does not exist{tail}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {_short(p)} ({e.strerror}){tail}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {_short(p)} is a directory; give a file{tail}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a named pipe" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise ConfigError(f"{what} {_short(p)} is {kind}, not a regular file (it would be "
                          f"read forever or block); give a file{tail}")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"cannot read {what} {_short(p)} (permission denied){tail}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ConfigError(f"{what} {_short(p)} is {_size(st.st_size)}, more than the "
                          f"{_size(max_bytes)} it may be{tail}")
    return st.st_size


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
