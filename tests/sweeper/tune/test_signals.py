"""StopSignals, the driver's signal handling, with real signals sent to this process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeper.tune.interrupt import StopSignals


def _send(signum: int) -> None:
    os.kill(os.getpid(), signum)  # handled before os.kill returns, on the main thread


def test_outside_fit_sigterm_and_sighup_stop_like_ctrl_c():
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with StopSignals() as s, pytest.raises(KeyboardInterrupt):
            _send(signum)
        assert s.received == signal.Signals(signum).name


def test_handlers_are_put_back():
    before = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with StopSignals():
        pass
    assert {n: signal.getsignal(n) for n in before} == before


def test_during_fit_a_second_ctrl_c_is_noted_and_a_third_quits(capsys):
    with StopSignals() as s, s.fitting():
        _send(signal.SIGINT)  # stands for the one Tune's handler took: ours now sees the next
        assert "still stopping cleanly" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            _send(signal.SIGINT)


def test_deferred_signals_wait_for_the_bookkeeping():
    with StopSignals() as s:
        with s.deferred():
            _send(signal.SIGTERM)
            _send(signal.SIGINT)
        assert s.received == "SIGTERM"


def test_sigterm_takes_tunes_clean_stop_when_tune_owns_sigint():
    calls = []
    with StopSignals() as s:
        ours = signal.getsignal(signal.SIGINT)

        def tune_handler(signum, frame):  # what Ray Tune installs inside fit
            calls.append(signum)
            signal.signal(signal.SIGINT, ours)

        signal.signal(signal.SIGINT, tune_handler)
        assert not s.stopped_by_tune
        _send(signal.SIGTERM)
        assert calls == [signal.SIGINT] and s.stopped_by_tune and s.received == "SIGTERM"


def test_rays_restore_advice_is_replaced_by_ours(capsys):
    log = logging.getLogger("ray.tune.tune")
    with StopSignals():
        assert not log.filter(logging.makeLogRecord({"msg": "Stop signal received (e.g. "
                                                     "via SIGINT/Ctrl+C), ending Ray Tune"}))
        assert "stopping: saving the sweep's state" in capsys.readouterr().err
        assert not log.filter(logging.makeLogRecord({"msg": "Experiment has been "
                                                     "interrupted, but the most recent"}))
        assert log.filter(logging.makeLogRecord({"msg": "anything else"}))
    assert log.filter(logging.makeLogRecord({"msg": "Stop signal received"}))


def test_sigterm_stops_train_like_ctrl_c(tmp_path):
    """Any command, not only `run`: SIGTERM ends it with exit 130 and one line."""
    proc = subprocess.Popen([str(Path(sys.executable).with_name("sweeper")), "train",
                             "--no-track", "--steps", "10000000", "--hidden", "8", "--depth",
                             "1", "--eval-every", "1000000"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)  # imports done, training
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
