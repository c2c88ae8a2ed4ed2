"""Ctrl-C, SIGTERM and SIGHUP stop a sweep the same way: cleanly, and resumable.

Inside `Tuner.fit` Ray Tune owns SIGINT: its handler asks the loop to stop, writes a final
snapshot (cut-off trials stay RUNNING in it, so a resume continues them) and puts the
previous handler back. `StopSignals` is that previous handler, and it makes SIGTERM and
SIGHUP (a `kill`, a scheduler's stop, a closed terminal) take the same path instead of
ray.init's `sys.exit`, which aborted the driver with a C++ stack dump. A second signal
during the clean stop is ignored with a note; a third quits at once (still resumable: the
resume repairs a snapshot cut off mid-write, see tune_state.py). While the driver closes
the books after `fit` (MLflow statuses, the Optuna study), signals wait until it is done.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

_HANDLED = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                 if hasattr(signal, n))


class _TuneStopMessages(logging.Filter):
    """Ray's own lines about a stop advise `Tuner.restore(...)` and SIGTERM "to skip" the
    final save, neither true here; print ours instead (the CLI adds the resume command)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if text.startswith("Stop signal received"):
            print("stopping: saving the sweep's state and stopping its trials (Ctrl-C "
                  "again to quit at once; the sweep stays resumable)", file=sys.stderr)
            return False
        return not text.startswith("Experiment has been interrupted")


_TUNE_LOGGER = "ray.tune.tune"


class StopSignals:
    """Installs the handlers for the life of a `with` block; `received` names the first
    signal that arrived (None if none did)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._extra = 0
        self._fitting = False
        self._deferring = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        self._old = {s: signal.getsignal(s) for s in _HANDLED}
        self._filter = _TuneStopMessages()
        logging.getLogger(_TUNE_LOGGER).addFilter(self._filter)
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        logging.getLogger(_TUNE_LOGGER).removeFilter(self._filter)

    def install(self) -> None:
        """(Re)install the handlers; ray.init replaces the SIGTERM one with its own."""
        signal.signal(signal.SIGINT, self._on_int)
        for s in _HANDLED:
            if s != signal.SIGINT:
                signal.signal(s, self._on_other)

    @property
    def stopped_by_tune(self) -> bool:
        """True once Tune's own SIGINT handler has fired (it puts ours back when it does)."""
        return signal.getsignal(signal.SIGINT) == self._on_int

    def fitting(self) -> AbstractContextManager[None]:
        """Around `Tuner.fit`: a signal arriving while Tune stops cleanly is noted once."""
        return self._while("_fitting")

    def deferred(self) -> AbstractContextManager[None]:
        """Signals are recorded but do not interrupt the block (the driver's bookkeeping)."""
        return self._while("_deferring")

    @contextmanager
    def _while(self, flag: str) -> Iterator[None]:
        setattr(self, flag, True)
        try:
            yield
        finally:
            setattr(self, flag, False)

    def _record(self, signum: int) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def _on_int(self, signum: int, frame) -> None:
        self._record(signum)
        if self._deferring:
            return
        if self._fitting and self._extra == 0:
            self._extra += 1
            print("still stopping cleanly; press Ctrl-C again to quit at once (the sweep "
                  "stays resumable)", file=sys.stderr)
            return
        raise KeyboardInterrupt

    def _on_other(self, signum: int, frame) -> None:
        self._record(signum)
        handler = signal.getsignal(signal.SIGINT)
        if handler != self._on_int and callable(handler):
            handler(signal.SIGINT, frame)  # Tune's clean stop
        else:
            self._on_int(signum, frame)
