"""The `sweeper` console script's quick exit (sweeper.cli.main.console): what the skipped
interpreter teardown was for still happens -- thread pools end, atexit handlers run, output
is flushed into a pipe -- and exit codes are those `main` gave."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PRELUDE = """
import atexit, concurrent.futures, sys, threading, time
from sweeper.cli.main import console
pool = concurrent.futures.ThreadPoolExecutor(2)  # idle workers: must not hold the exit
pool.submit(print, "pool ran").result()
done = []
def late():
    time.sleep(0.3)
    done.append(1)
threading.Thread(target=late).start()  # not a daemon: joined before the exit
atexit.register(lambda: print("atexit ran, thread done:", bool(done), flush=True))
print("x" * 200_000)  # more than a pipe buffer, unflushed when the exit comes
"""


def _console(argv: list[str]) -> subprocess.CompletedProcess:
    code = _PRELUDE + f"sys.argv = ['sweeper', *{argv!r}]\nconsole()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["train", "--steps", "ten"], 2)])
def test_the_quick_exit_keeps_threads_atexit_output_and_the_code(argv, code):
    p = _console(argv)
    assert p.returncode == code, p.stderr[-2000:]
    assert "pool ran" in p.stdout and "x" * 200_000 in p.stdout
    assert "atexit ran, thread done: True" in p.stdout
    assert ("Usage: sweeper" in p.stdout) if code == 0 else p.stderr.startswith("error: ")
