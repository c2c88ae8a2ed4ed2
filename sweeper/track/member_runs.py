"""One MLflow run per member of a population: the one "log, plot, close" path that single
runs (`sweeper train`), confirm runs (`sweeper stable --confirm`) and sweep trials share.

The callers differ only in when they train and report (a progress bar, or Tune's reports
and checkpoints); what reaches MLflow for a member is the same everywhere: its metrics at
every evaluation, a sample figure where asked, and a final status that says `diverged` for
a member that blew up and the run's own status otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from sweeper.track.store import RunLogger
from trainers import names
from trainers.config import TrialConfig
from trainers.members import Members
from trainers.user_models import model_params

Metrics = dict[str, float]


def config_params(cfg: TrialConfig) -> dict[str, object]:
    """A run's params: every config field, and the version of a user's model file."""
    return {**cfg.to_dict(), **model_params(cfg)}


class MemberRuns:
    """The runs of `members`, in member order; with no loggers (not tracked) a no-op."""

    def __init__(self, loggers: Sequence[RunLogger]) -> None:
        self.loggers = list(loggers)

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def log_metrics(self, latest: Sequence[Metrics], moved: Sequence[bool] | None = None) -> None:
        """Each member's metrics at its step; `moved` False skips a member (logged before)."""
        if not self:
            return
        for j, (m, logger) in enumerate(zip(latest, self.loggers, strict=True)):
            if moved is None or moved[j]:
                logger.log_metrics(int(m[names.STEP]), m)

    def log_samples(self, members: Members, latest: Sequence[Metrics], *,
                    title: Callable[[TrialConfig, Metrics], str],
                    artifact: Callable[[Metrics], str],
                    moved: Sequence[bool] | None = None, first: int = 0,
                    samples: np.ndarray | None = None) -> None:
        """A sample figure per member (~0.1 s each): collapse is visible at a glance. These
        runs' members start at member `first` of `members`; `samples` are all members'
        (`members.sample()`), when the caller has them already."""
        if not self:
            return
        from sweeper.analyse.figures import sample_figure  # matplotlib only when plotting

        if samples is None:
            samples = members.sample().cpu().numpy()
        for j, (m, logger) in enumerate(zip(latest, self.loggers, strict=True)):
            if moved is None or moved[j]:
                cfg = members.configs[first + j]
                logger.log_figure(sample_figure(members.data, samples[first + j],
                                                title(cfg, m)), artifact(m))

    def flush(self) -> None:
        for logger in self.loggers:
            logger.flush()

    def close(self, latest: Sequence[Metrics], status: str) -> None:
        """Final status per member; a member that never trained and has no run gets none."""
        if not self:
            return
        for m, logger in zip(latest, self.loggers, strict=True):
            if m or logger.run_id is not None:
                logger.close("diverged" if m.get(names.DIVERGED) else status)

    @contextmanager
    def closed_on_error(self, latest: Callable[[], Sequence[Metrics]]) -> Iterator[None]:
        """Close every run with status `error` if training raises (Ctrl-C included)."""
        try:
            yield
        except BaseException:
            got = list(latest())
            self.close(got + [{}] * (len(self.loggers) - len(got)), "error")
            raise


def step_artifact(m: Metrics) -> str:
    """The figure of an evaluation, named by step so the UI lists them in order."""
    return f"plots/samples_step{int(m[names.STEP]):07d}.png"
