"""Options and checks that several commands share, defined once (no command imports another's
module for them)."""

from __future__ import annotations

from collections.abc import Callable

import click

from sweeper.errors import UserError
from sweeper.track.store import DEFAULT_TRACKING_URI

# --smoke-test shrinks the budget to seconds while keeping every code path.
SMOKE = {"steps": 40, "eval_every": 20, "eval_samples": 500}


def tracking_uri_option(help: str) -> Callable:
    """`--tracking-uri`, defaulting to the embedded SQLite store; `help` says what it is for."""
    return click.option("--tracking-uri", default=DEFAULT_TRACKING_URI, show_default=True,
                        help=help)


# Seeds per setting: more than MANY_SEEDS draws a note (a trial's first report waits for
# all of them), more than MAX_SEEDS is refused (stability needs 3-10; see docs/sweeps.md).
MANY_SEEDS = 32
MAX_SEEDS = 1000


def check_seeds(option: str, n: int) -> None:
    if n < 1 or n > MAX_SEEDS:
        raise UserError(f"{option} must be between 1 and {MAX_SEEDS}, got {n}")
    if n > MANY_SEEDS:
        click.echo(f"note: {option} {n}: each setting trains {n} runs (as batched populations), "
                   "so its first result comes only once all of them reach their first "
                   "evaluation; 3-10 seeds usually settle stability (docs/sweeps.md: Stability)",
                   err=True)
