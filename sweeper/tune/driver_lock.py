"""One live driver per sweep: an exclusive lock on a file in the sweep's folder.

Two drivers on one sweep (a `--resume` typed while the first still runs) both schedule its
trials and both write Tune's state and checkpoints; the result is duplicate trial runs and
broken checkpoints. `flock` is released by the kernel when the holder exits, however it
exits (even SIGKILL), so a lock is never stale on a local file system. The file holds the
holder's PID and host, for the message. On a network file system without flock support the
lock degrades to no lock (say so in the README); Ray clusters keep the driver on one host.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sweeper.errors import UserError

LOCK_FILE = "driver.lock"


@contextmanager
def driver_lock(folder: Path) -> Iterator[None]:
    """Hold the sweep folder's driver lock, or fail in one line naming the live holder.

    A folder this call created and that holds nothing but the lock afterwards (a sweep
    refused before it saved anything) is removed again, so the name stays free."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the with-block
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip()[:200] or "another process"
        f.close()
        raise UserError(f"sweep folder {folder} is in use by a running driver ({holder}); "
                        "wait for it to finish, or stop it (Ctrl-C) and then --resume") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
        if created and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
            path.unlink(missing_ok=True)
            folder.rmdir()
