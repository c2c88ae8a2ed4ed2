"""Budget curves: modes held and HQ against generator steps, per row, 10 seeds each.

Does a setting tuned at a short budget keep its lead when trained longer? Each point is the
row trained *at that budget*, from scratch, under the named protocol with only the steps
changed (benchmarks/protocols.py), seeds S .. S+N-1 as one population. Separate runs, not
evaluations along one long run: the recommended settings decay their learning rates
linearly to zero over the budget, so a 1,000-step run is not the first 1,000 steps of a
25,000-step one.

    python -m benchmarks.budget_curves --datasets ring8 --losses wgan-gp \\
        --recommended benchmarks/recommended/ring8-wgan-gp-quality.yaml \\
        --budgets 1000,3000,10000,25000 --cache cache/coverage --plot docs/img/budget_curves.png
    python -m benchmarks.budget_curves --smoke-test

Runs are cached exactly as `benchmarks.mode_coverage` caches them (same key), so the point
at the table's own budget is the table's runs, and an interrupted curve resumes.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import protocols
from benchmarks._common import mean_and_se, mean_se
from benchmarks.mode_coverage import (
    Row,
    Run,
    cached_or_trained,
    recommended_row,
    succeeded,
    trainer_version,
)
from trainers import names
from trainers.config import ConfigError
from trainers.runtime import resolve_device

DEFAULT_BUDGETS = (1000, 3000, 10_000, 25_000)
# The published WGAN-GP row (modes, HQ %), quoted in benchmarks/mode_coverage.py's tables.
GDPP_WGAN_GP = {"ring8": (6.8, 59.6), "grid25": (24.2, 28.7)}


def cell(runs: list[Run]) -> str:
    """modes held, HQ %, successes (Wilson 95%) of one row at one budget."""
    count, _, interval = succeeded(runs).partition(" ")
    return (f"{mean_se([r.held for r in runs])} modes, HQ "
            f"{mean_se([100 * r.metrics[names.HQ_FRACTION] for r in runs], '{:.1f}')}%, "
            f"{count} succeed {interval}".rstrip())


def curve_table(dataset: str, budgets: list[int], rows: list[Row],
                runs: dict[tuple[int, str, str], list[Run]]) -> str:
    lines = [f"### {dataset}", "", "| row | " + " | ".join(f"{b:,} steps" for b in budgets)
             + " |", "|---" * (len(budgets) + 1) + "|"]
    for row in rows:
        cells = [cell(runs[(b, dataset, row.label)]) if runs.get((b, dataset, row.label))
                 else "–" for b in budgets]
        if any(c != "–" for c in cells):
            lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(path: Path, datasets: list[str], budgets: list[int], rows: list[Row],
         runs: dict[tuple[int, str, str], list[Run]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, axes = plt.subplots(len(datasets), 2, figsize=(9, 3.2 * len(datasets)), dpi=110,
                             squeeze=False)
    for i, d in enumerate(datasets):
        for j, (what, value) in enumerate((("modes held", lambda r: r.held),
                                           ("HQ %", lambda r: 100 * r.metrics[
                                               names.HQ_FRACTION]))):
            ax = axes[i][j]
            for row in rows:
                pts = [(b, [value(r) for r in runs[(b, d, row.label)]]) for b in budgets
                       if runs.get((b, d, row.label))]
                if not pts:
                    continue
                ms, ses = zip(*(mean_and_se(v) for _, v in pts), strict=True)
                ax.errorbar([b for b, _ in pts], ms, yerr=ses, marker="o", capsize=3,
                            label=row.label)
            quoted = GDPP_WGAN_GP.get(d)
            if quoted:  # at its own budget (25k steps) and networks, not ours
                ax.plot([25_000], [quoted[j]], marker="*", ms=11, ls="none", color="black",
                        label="WGAN-GP, GDPP tab. 1 (25k steps, its networks)")
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(budgets, [f"{b / 1000:g}k" if b >= 1000 else str(b) for b in budgets])
            k = max((r.metrics[names.NUM_MODES] for (_, dd, _), rs in runs.items() if dd == d
                     for r in rs), default=1)
            ax.set_ylim(-0.03 * (k if j == 0 else 100), 1.03 * (k if j == 0 else 100))
            ax.set_xlabel("generator steps (each point trained at that budget)")
            ax.set_ylabel(what)
            ax.set_title(f"{d}: {what}", fontsize=9)
            ax.grid(alpha=0.3)
        axes[i][0].legend(fontsize=6, loc="best")
    fig.suptitle(textwrap.fill(title, 150), fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke-test", action="store_true",
                   help="tiny networks, 2 seeds, budgets 5 and 10: checks the script only")
    p.add_argument("--protocol", choices=sorted(protocols.PROTOCOLS), default="short")
    p.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)),
                   help="generator steps, comma-separated")
    p.add_argument("--losses", default="wgan-gp", help="rows at reference defaults")
    p.add_argument("--recommended", type=Path, action="append", default=[],
                   help="a `sweeper stable --export` YAML; one row on its dataset (repeatable)")
    p.add_argument("--datasets", default="ring8,grid25")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--device", default="cpu", help="as benchmarks.mode_coverage's --device")
    p.add_argument("--cache", type=Path, help="as benchmarks.mode_coverage's --cache")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--plot", type=Path, help="write the curves as a PNG here")
    p.add_argument("--out", type=Path, help="also write the markdown here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.smoke_test:
        args.budgets, args.seeds = "5,10", 2
        overrides = {"hidden": 8, "batch_size": 32, "eval_samples": 500}
    if args.device != "cpu":
        overrides["device"] = args.device
    try:
        budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
        if not budgets or args.seeds < 1 or args.workers < 1 or args.seed_start < 0:
            raise ConfigError("give --budgets (steps, comma-separated), --seeds >= 1, "
                              "--seed-start >= 0 and --workers >= 1")
        per_budget = {b: protocols.resolve(args.protocol, steps=b, **overrides)
                      for b in budgets}
        resolve_device(args.device)
        datasets = args.datasets.split(",")
        for d in datasets:
            protocols.resolve(args.protocol, dataset=d, **overrides)
        rows = [Row(loss, None, {"loss": loss}) for loss in filter(None, args.losses.split(","))]
        rows += [recommended_row(p) for p in args.recommended]
    except ConfigError as e:  # before ValueError, its base class
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError:
        print("error: --budgets must be whole numbers of steps, comma-separated",
              file=sys.stderr)
        return 2
    if not rows:
        print("error: give at least one row (--losses or --recommended)", file=sys.stderr)
        return 2

    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    version = trainer_version()
    t0 = time.perf_counter()
    runs: dict[tuple[int, str, str], list[Run]] = {}
    cpu, fresh, total = 0.0, 0, 0
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for b in budgets:  # short budgets first: a partial curve is already worth reading
            jobs = [(d, row, s) for d in datasets for row in rows
                    if row.dataset in (None, d) for s in seeds]
            done, n_new, _ = cached_or_trained(pool, jobs, per_budget[b], args.cache,
                                               version=version,
                                               checkpoint_every=args.checkpoint_every)
            for (d, row, _), run in zip(jobs, done, strict=True):
                runs.setdefault((b, d, row.label), []).append(run)
                cpu += run.cpu_seconds
            fresh, total = fresh + n_new, total + len(jobs)
    title = protocols.label(args.protocol, per_budget[budgets[-1]]).replace(
        f"{budgets[-1]:,} generator steps", "steps on the x axis")
    text = "\n\n".join([
        f"## Budget curves\n\n{title}; seeds {seeds[0]}..{seeds[-1]} per point; each cell: "
        "mean ± s.e. of modes held and HQ %, and seeds that succeed under the quality rule "
        "with the Wilson 95% interval",
        *[curve_table(d, budgets, rows, runs) for d in datasets],
        f"total wall time: {time.perf_counter() - t0:.0f} s ({total} runs, {fresh} trained "
        f"now, {total - fresh} from --cache; {cpu / 3600:.2f} CPU hours of training and "
        "evaluation in all)"]) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    if args.plot:
        plot(args.plot, datasets, budgets, rows, runs, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
