"""Output paths checked before any work, so a bad one costs a line, not a finished run."""

from __future__ import annotations

from pathlib import Path

from sweeper.errors import UserError, short


def check_file_writable(path: str | Path, option: str) -> None:
    """Fail before training, not after it, when an output file cannot be written."""
    p = Path(path)
    try:
        if p.is_dir():
            raise UserError(f"{option} {short(str(p))} is a directory; give a file path")
        existed = p.exists()
        if existed and not p.is_file():
            # Opening a pipe with no reader blocks forever; a device is nothing to overwrite.
            raise UserError(f"{option} {short(str(p))} is not a regular file (a pipe, socket "
                            "or device); give a file path")
        with open(p, "ab"):
            pass
        if not existed:
            p.unlink(missing_ok=True)
    except OSError as e:
        raise UserError(f"{option} {short(str(p))} cannot be written ({e.strerror}); give a "
                        "path in a writable folder") from None


def check_dir_writable(path: str | Path, option: str) -> Path:
    """Create the output folder if needed and prove it takes a file; returns it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write {option} {short(str(p))} ({e.strerror}); pass a "
                        f"writable {option}") from None
    return p
