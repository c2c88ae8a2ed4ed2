"""Progress with an ETA for the long commands (`train`, `stable --confirm`, the benchmarks).

On a terminal it is a tqdm bar on stderr. When stderr is not a terminal (CI logs, `2> log`,
a pipe) a bar's carriage returns would fill the log with one long line, so it prints a plain
line instead, at most every `PLAIN_EVERY_S` seconds and at the end:

    train: 600/1200 steps (50%), 0:12 elapsed, ETA 0:12

The ETA counts only the work done in this process, so a resumed run is not credited with the
steps it restored.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from tqdm import tqdm

from trainers.members import Members
from trainers.population import evaluations

PLAIN_EVERY_S = 10.0
_BAR_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} "
               "[{elapsed}, ETA {remaining}]")

T = TypeVar("T")


def _clock(seconds: float) -> str:
    return tqdm.format_interval(max(0.0, seconds))


class Progress:
    """Progress towards `total` units; `update_to(n)` moves it, `write(line)` prints a line
    without breaking the bar. `tty=None` asks stderr whether it is a terminal."""

    def __init__(self, total: int, desc: str, unit: str = "steps", *, initial: int = 0,
                 stream: IO[str] | None = None, tty: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._start_n = initial
        self._t0 = self._printed_at = time.monotonic()
        if tty is None:
            tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = (tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream,
                          bar_format=_BAR_FORMAT, dynamic_ncols=True, leave=True)
                     if tty else None)
        self._closed = False

    def update_to(self, n: int) -> None:
        if n == self.n:
            return
        if self._bar is not None:
            self._bar.update(n - self.n)
            self.n = n
            return
        self.n = n
        now = time.monotonic()
        if now - self._printed_at >= PLAIN_EVERY_S:
            self._printed_at = now
            self._plain_line(now)

    def write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left at this process's rate so far; None before any unit is done."""
        done = self.n - self._start_n
        if done <= 0:
            return None
        elapsed = (now if now is not None else time.monotonic()) - self._t0
        return elapsed * (self.total - self.n) / done

    def _plain_line(self, now: float) -> None:
        pct = 100.0 * self.n / self.total if self.total else 100.0
        eta = self.eta_seconds(now)
        tail = f", ETA {_clock(eta)}" if eta is not None and self.n < self.total else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%), "
              f"{_clock(now - self._t0)} elapsed{tail}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.n != self._start_n or self.total == 0:
            self._plain_line(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def iterate(items: Iterable[T], desc: str, unit: str = "runs", total: int | None = None,
            **kwargs: Any) -> Iterator[T]:
    """Yield `items`, counting each one that comes back (for loops over jobs)."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    n = total if total is not None else len(items)  # type: ignore[arg-type]
    with Progress(n, desc, unit, **kwargs) as bar:
        for i, item in enumerate(items, 1):
            yield item
            bar.update_to(i)


def _members_progress(members: Members) -> tuple[int, int]:
    """(steps done, steps in all) over a population or a group of them."""
    runs = getattr(members, "runs", [members])
    return (sum(r.step for r in runs), sum(r.config.steps for r in runs))


def train_members(members: Members, desc: str, *, chunks: int = 100,
                  **kwargs: Any) -> Iterator[tuple[Progress, list[dict[str, float]]]]:
    """Train `members` to the end, evaluating on their schedule, with a progress bar.

    Yields (bar, metrics) after each evaluation, so a caller logs and prints through
    `bar.write`. Training runs in chunks of about 1/`chunks` of the budget between
    evaluations; chunking does not change the result, since each member draws from its own
    generators step by step.
    """
    done, total = _members_progress(members)
    with Progress(total, desc, "steps", initial=done, **kwargs) as bar:
        chunk = max(1, total // max(1, chunks) // max(1, len(getattr(members, "runs", [0]))))
        for latest in evaluations(members, chunk=chunk,
                                  trained=lambda: bar.update_to(_members_progress(members)[0])):
            yield bar, latest
