"""What a sweep prints while it runs: one line per trial that ends, and every
`every_s` seconds a short table of the running trials. It replaces Ray Tune's boxed
per-trial panels (776 lines for a 16-trial sweep); `sweeper run --verbose` brings those back.

It is a driver-side Tune callback. Tune pickles it with the experiment, so a resume prints
the same way.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from sweeper.analyse import objective
from sweeper.tune.budget import read_counts
from sweeper.tune.trial_ids import FUSED, fused_settings
from trainers import names


def last_line(error: BaseException) -> str:
    """The line of a trial's error that names it (Ray wraps it in a traceback)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class TrialErrorLines(logging.Filter):
    """Tune logs every failed attempt of a trial with Ray's whole traceback (about 40 lines)
    and then lists the failed trials again. Here each attempt is one line naming the error;
    the traceback is kept as error.txt on the trial's MLflow run, and the sweep's closing
    line names the settings that failed for good (`sweeper run --verbose` shows Tune's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg.startswith("Trials did not complete"):
            return False
        if not msg.startswith("Trial task failed for trial"):
            return True
        trial = msg.rsplit(" ", 1)[-1].removeprefix("run_trial_")
        error = record.exc_info[1] if record.exc_info else None
        record.msg = (f"trial {trial} failed: {last_line(error) if error else 'error'} "
                      "(retried from its last checkpoint while --max-failures allows; its "
                      "traceback is error.txt on its MLflow trial run)")
        record.args, record.exc_info, record.exc_text = (), None, None
        return True


def quiet_trial_errors() -> None:
    """Install TrialErrorLines on Tune's loggers (idempotent)."""
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        log = logging.getLogger(name)
        if not any(isinstance(f, TrialErrorLines) for f in log.filters):
            log.addFilter(TrialErrorLines())


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def describe(result: dict[str, Any], seeds: int) -> str:
    """The headline of a trial result: objective, seeds that succeed, HQ, modes, score."""
    failed = result.get(names.FAILED_SEEDS)
    ok = "-" if failed is None else f"{seeds - int(failed)}/{seeds}"
    value = result.get(names.OBJECTIVE, result.get(names.RUNNING_OBJECTIVE))
    # Data without labelled modes hold no modes: coverage and precision judge them.
    quality = (f"HQ {_fmt(result.get(objective.HQ_FRACTION_MEAN), '.2f')}, "
               f"modes {_fmt(result.get(objective.MODES_HELD_MEAN), '.1f')}"
               if objective.HQ_FRACTION_MEAN in result or objective.COVERAGE_MEAN not in result
               else
               f"precision {_fmt(result.get(objective.PRECISION_MEAN), '.2f')}, "
               f"coverage {_fmt(result.get(objective.COVERAGE_MEAN), '.2f')}")
    return (f"objective {_fmt(value, '.4f')}, seeds ok {ok}, {quality}, "
            f"score {_fmt(result.get(objective.SCORE_MEDIAN), '.3f')}")


class ProgressCallback(Callback):
    """One line per ended trial, and a table of the running ones every `every_s` seconds."""

    def __init__(self, sampled: list[str], num_samples: int, seeds: int,
                 every_s: float = 30.0, budget: tuple[int, Path] | None = None) -> None:
        self.sampled = list(sampled)
        self.num_samples = num_samples
        self.seeds = seeds
        # (--budget-steps, the ComputeBudget's file): the table's header says what is spent.
        self.budget = budget
        self.every_s = every_s
        self._ended: set[str] = set()
        self._last = 0.0

    def _params(self, cfg: dict[str, Any]) -> str:
        return ", ".join(f"{k}={short_value(cfg[k])}" for k in self.sampled if k in cfg)

    def _line(self, text: str) -> None:
        print(text, file=sys.stdout, flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        # A fused trial's settings that halving stopped: said as they stop, not at its end.
        for e, params in _settings(trial, result):
            if e["status"] == "stopped_early":
                self._say(e["id"], "stopped early (halving)", e, params)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "finished" if names.OBJECTIVE in (trial.last_result or {})
                  else "stopped early")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "error")

    def _end(self, trial, how: str) -> None:
        r = trial.last_result or {}
        fused = _settings(trial, r)
        if not fused:
            self._say(trial.trial_id, how, {"step": int(r.get(names.STEP, 0)), "metrics": r},
                      trial.config or {})
        for e, params in fused:
            ended = {"finished": "finished", "stopped_early": "stopped early (halving)"}
            self._say(e["id"], ended.get(e["status"], how), e, params)

    def _say(self, setting: str, how: str, e: dict[str, Any], params: dict[str, Any]) -> None:
        if setting in self._ended:
            return
        self._ended.add(setting)
        self._line(f"[{len(self._ended)}/{self.num_samples}] {setting} {how} at step "
                   f"{e['step']}: {describe(e['metrics'], self.seeds)} | "
                   f"{self._params(params)}")

    def on_step_end(self, iteration, trials, **info) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        running = [t for t in trials if t.status == "RUNNING"]
        if not running:
            return
        started = sum(len((t.config or {}).get(FUSED, [None])) for t in trials
                      if t.status != "PENDING")
        to_go = max(0, self.num_samples - started)
        spent = ""
        if self.budget:
            steps = sum(read_counts(self.budget[1]).values())
            spent = (f", compute {steps:,.0f} of {self.budget[0]:,} generator steps "
                     f"({steps / self.budget[0]:.0%})")
        self._line(f"-- {time.strftime('%H:%M:%S')}: {len(running)} running, "
                   f"{len(self._ended)} ended, {to_go} to go{spent}")
        for t in running:
            r = t.last_result or {}
            at = f"step {int(r[names.STEP])}" if names.STEP in r else "training"
            fused = _settings(t, r)
            batch = (t.config or {}).get(FUSED)
            if batch and not fused:  # before its first evaluation: what it trains
                many = f"{len(batch)} settings" if len(batch) > 1 else "1 setting"
                self._line(f"   {t.trial_id} {at}: {many}, no evaluation yet | "
                           f"{self._params(shared(batch))}")
            elif not fused:
                self._line(f"   {t.trial_id} {at}: {describe(r, self.seeds) if r else '-'} | "
                           f"{self._params(t.config or {})}")
            for e, params in fused:
                if e["status"] == "running":
                    self._line(f"   {e['id']} {at}: {describe(e['metrics'], self.seeds)} | "
                               f"{self._params(params)}")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ended": set(), "_last": 0.0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tune restores the callback pickled when the sweep started, so a sweep started by an
        # older version resumes under this code: attributes added since take their defaults.
        self.__dict__.update({"budget": None, **state})


def _settings(trial, result: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A fused trial's (setting summary, its params) from one of its results; [] for an
    unfused trial."""
    summaries = fused_settings(result or {})
    if summaries is None:
        return []
    return list(zip(summaries, (trial.config or {}).get(FUSED, []), strict=False))


def shared(settings: list[dict[str, Any]]) -> dict[str, Any]:
    """The params every one of a fused trial's settings has with the same value (its shape)."""
    first, *rest = settings
    return {k: v for k, v in first.items() if all(s.get(k) == v for s in rest)}


def short_value(v: Any) -> str:  # as results_table.format_table shows params
    """A parameter value as tables show it: floats to 3 significant digits."""
    return f"{v:.3g}" if isinstance(v, float) else str(v)
