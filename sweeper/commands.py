"""Commands printed for the user to paste: each must run as printed, in the same shell and
folder, with every option needed to find the same sweep again.

`make run` calls the venv's `sweeper` by its path without putting the venv on PATH, so a
bare `sweeper ...` would be "command not found" there: when `sweeper` on PATH is not the
program running now, the printed command names the running program's path (relative to
the current folder when it is inside it).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def program() -> str:
    """How to call the running `sweeper` from the current folder."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    exe = Path(argv0)
    if exe.name != "sweeper":  # python -m, a test runner: the plain name is the best guess
        return "sweeper"
    exe = exe.resolve() if exe.parent != Path() else Path(shutil.which(argv0) or argv0)
    on_path = shutil.which("sweeper")
    if on_path and Path(on_path).resolve() == exe.resolve():
        return "sweeper"
    try:
        rel = os.path.relpath(exe, Path.cwd())
    except ValueError:  # another drive (Windows)
        return str(exe)
    return rel if not rel.startswith("..") else str(exe)


def sweeper_cmd(*args: str) -> str:
    """`sweeper ARGS` as one shell-quoted line, with the program as `program()` finds it."""
    return " ".join(shlex.quote(a) for a in [program(), *args])

