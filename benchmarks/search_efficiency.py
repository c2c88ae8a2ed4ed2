"""Search efficiency (issues 6 and 15): TPE + ASHA against random search, at equal compute.

With WGAN-GP on ring8 (or `--dataset grid25`), both arms search one small space (printed in
the output) through the sweeper's own `run_sweep`, with the same machinery, seeds per setting
and concurrency:

  tpe-asha   Optuna TPE + ASHA early stopping (the sweeper's defaults: grace 0.25, rf 3)
  random     Optuna RandomSampler, no early stopping

Compute is counted in **generator steps actually trained**, summed over every seed run of
every trial (a trial ASHA stopped counts what it trained). Trainer-seconds (train_seconds +
eval_seconds of the seed runs) are a secondary unit. The compute a search *had spent when a
trial completed* counts the trials still running too: every seed run logs its `step` at each
evaluation, so MLflow's timestamps say how far each run was at that moment. (Summing only the
trials completed so far would ignore the work in flight on the other worker, which is larger
for random search, whose trials all run to the end.)

Equal compute: both arms get the budget C = budget_trials x steps x seeds generator steps.
Random search runs budget_trials trials (C exactly, less if seeds diverge). TPE + ASHA runs
ceil(tpe_factor x budget_trials) trials, since ASHA stops many after a fraction of the budget;
then only the trials that completed before the search had spent more than C count, and the
rest is discarded (reported, never counted). Each search stops once it has trained C + one
trial (the sweeper's --budget-steps), so no arm trains trials that could only be discarded.

Budget curve (Kurach et al. 2019): after each trial completes, the best success rate among
*finished* trials so far (an ASHA-stopped trial did not finish and cannot be recommended), as
a function of compute spent and of trials completed; mean +- s.e. over repeats of the
search with sampler seeds S, S + 1, ... (`--sampler-seed-start`; the same for both arms).
Best objective so far is the secondary curve. Targets: compute spent when the first
finished trial reaching them completed. Random search's trials are independent draws, so its
hit rate per trial also pools over repeats (Wilson 95%), which gives its expected compute to
a target even where a repeat ran out of budget first. On ring8 a stable setting turns up
within a few trials of either arm, so issue 15 asks for a harder one: with `--hq-target 0.6`,
T3 is a finished setting on which every seed succeeds with mean HQ >= 60%, the target to use
on grid25.

Usage:
    python -m benchmarks.search_efficiency [--repeats 3] [--budget-trials 10] [--out FILE]
        [--plot docs/img/search_efficiency.png] [--state-dir DIR]
    python -m benchmarks.search_efficiency --dataset grid25 --steps 2000 --hq-target 0.6 \\
        --budget-trials 40 --repeats 5 --tpe-startup 5 --tpe-multivariate --state-dir DIR
    python -m benchmarks.search_efficiency --reanalyze --state-dir DIR [--fid-target 0.002]
    python -m benchmarks.search_efficiency --smoke-test      # tiny; every code path, ~2 min
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import machine_header, mean_se
from sweeper.analyse import objective
from sweeper.analyse.stability import setting_stats, wilson_interval
from sweeper.bars import Progress
from sweeper.errors import UserError
from sweeper.track import reader
from sweeper.track.metric_keys import history, metrics_of
from trainers import names
from trainers.quality import DEFAULT_RULE

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PLOT = ROOT / "docs" / "img" / "search_efficiency.png"
# The fractions of the budget C at which the tables read the curves.
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
# Points of the common compute grid on which repeats are averaged (and plotted).
GRID_POINTS = 200
# T2's median-FID threshold. In a first full run the best stable settings within C had median
# FID 0.0024-0.0038 and the first stable ones found were all below 0.005, so 0.005 did not
# separate "stable" from "stable and good"; 0.003 does.
FID_TARGET = 0.003
PROTOCOL_FILE = "protocol.json"
# Each finished search, as the tables read it (a few KB), so a run split over several
# invocations or machines needs only these files and the protocol, not MLflow's store.
SEARCHES_DIR = "searches"
# A state dir inside a git checkout commits only the compact results.
GITIGNORE = "*\n!.gitignore\n!protocol.json\n!searches/\n!searches/*.json\n"


# ----------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class Protocol:
    steps: int
    eval_every: int
    eval_samples: int
    hidden: int
    batch_size: int
    seeds: int
    concurrency: int
    repeats: int
    budget_trials: int
    tpe_factor: float
    fid_target: float
    grace: float = 0.25  # the sweeper's defaults (`sweeper run --grace/--reduction-factor`)
    reduction_factor: int = 3
    # TPE's random start-up trials (`sweeper run --tpe-startup`); searches saved before the
    # option existed ran Optuna's default of 10.
    tpe_startup: int = 10
    tpe_multivariate: bool = False  # `sweeper run --tpe-multivariate`
    dataset: str = "ring8"  # searches saved before the option searched ring8
    hq_target: float = 0.0  # T3's mean-HQ threshold; 0: no T3
    # Searches saved before the option trained at a constant learning rate. On grid25 the
    # recommended settings decay it linearly, which is what pulls samples within 3 sigma.
    lr_schedule: str = "constant"
    # Repeat k uses sampler seed sampler_seed_start + k. The sweeps behind the committed
    # settings used seed 0, and the same seed draws the same start-up settings in this
    # space, so a repeat with seed 0 would start from the setting the target was checked on.
    sampler_seed_start: int = 0

    @property
    def trial_steps(self) -> int:
        """Generator steps of one full-budget trial (all its seeds)."""
        return self.steps * self.seeds

    @property
    def budget(self) -> int:
        """C, the compute both arms get, in generator steps."""
        return self.budget_trials * self.trial_steps

    @property
    def tpe_trials(self) -> int:
        return math.ceil(self.tpe_factor * self.budget_trials)


def space_doc(p: Protocol) -> dict[str, Any]:
    """The search space both arms search (a sweeper search-space YAML document)."""
    return {
        "description": f"search-efficiency benchmark: WGAN-GP on {p.dataset}",
        "fixed": {"dataset": p.dataset, "loss": "wgan-gp", "steps": p.steps,
                  "eval_every": p.eval_every, "eval_samples": p.eval_samples,
                  "hidden": p.hidden, "batch_size": p.batch_size,
                  "lr_schedule": p.lr_schedule},
        "params": {"gp_lambda": {"log_uniform": [0.1, 100.0]},
                   "n_critic": {"int": [1, 5]},
                   "lr_d": {"log_uniform": [1.0e-4, 1.0e-2]},
                   "lr_g": {"log_uniform": [1.0e-4, 1.0e-2]}},
    }


@dataclass(frozen=True)
class Arm:
    key: str
    label: str
    search: str  # SweepOptions.search
    early_stop: bool

    def num_samples(self, p: Protocol) -> int:
        return p.tpe_trials if self.early_stop else p.budget_trials


ARMS = (Arm("tpe-asha", "TPE + ASHA", "tpe", True),
        Arm("random", "random", "random", False))


@dataclass(frozen=True)
class Target:
    key: str
    text: str
    met: Callable[[Trial], bool]


def targets(p: Protocol) -> tuple[Target, ...]:
    # A pilot (10 random settings, sampler seed 7) found none above 1/3 at 600 steps, so
    # T0 is an easier rung below T1; T2 separates good stable settings from merely stable
    # ones (see FID_TARGET); T3 (issue 15) asks for quality as well as stability.
    hq = (Target("T3", f"T1 and mean HQ >= {p.hq_target:.0%} over the seeds",
                 lambda t: t.finished and t.success_rate >= 1.0
                 and t.hq_mean >= p.hq_target - 1e-9),) if p.hq_target > 0 else ()
    return (
        Target("T0", "a finished setting with success rate >= 2/3 (at most a third of the "
               "seeds failed)", lambda t: t.finished and t.success_rate >= 2 / 3 - 1e-9),
        Target("T1", f"a finished setting with success rate 1.0 (all {p.seeds} seeds pass the "
               f"success rule: {DEFAULT_RULE.describe()}; none diverged)",
               lambda t: t.finished and t.success_rate >= 1.0),
        Target("T2", f"T1 and median FID < {p.fid_target:g}",
               lambda t: t.finished and t.success_rate >= 1.0 and t.fid_median < p.fid_target),
    ) + hq


# ----------------------------------------------------------------------------- one search
@dataclass(frozen=True)
class Trial:
    """One trial (setting) of a finished sweep, as MLflow recorded it."""

    trial_id: str
    index: int  # start order in its search (0 = first suggested)
    end_ms: int  # when its MLflow run was closed: the completion order
    steps: int  # generator steps trained, summed over its seed runs
    seconds: float  # train_seconds + eval_seconds, summed over its seed runs
    finished: bool  # trained to the full budget (not stopped by ASHA, no error)
    success_rate: float  # fraction of seeds neither diverged nor collapsed
    objective: float  # the sweeper's objective (failed seeds + m/(1+m)); inf if unfinished
    fid_median: float
    hq_mean: float = 0.0  # mean HQ fraction over its seeds (0 if unfinished)
    spent_steps: int = 0  # generator steps the whole search had trained when this completed
    spent_seconds: float = 0.0  # the same in trainer-seconds


@dataclass(frozen=True)
class SearchRun:
    arm: Arm
    repeat: int
    sampler_seed: int
    trials: tuple[Trial, ...]  # in completion order
    wall: float  # Tune's wall time for the sweep (run_sweep's `wall_seconds`)

    def within(self, budget: int) -> tuple[Trial, ...]:
        """The trials that completed before the search had spent more than `budget`."""
        return tuple(t for t in self.trials if t.spent_steps <= budget)


# One evaluation of one seed run: (timestamp ms, steps trained, trainer-seconds so far).
Trace = list[tuple[int, int, float]]


def spent_at(traces: Sequence[Trace], when_ms: int) -> tuple[int, float]:
    """(generator steps, trainer-seconds) all seed runs had logged by `when_ms`."""
    steps, seconds = 0, 0.0
    for trace in traces:
        i = bisect.bisect_right([ts for ts, _, _ in trace], when_ms)
        if i:
            steps += trace[i - 1][1]
            seconds += trace[i - 1][2]
    return steps, seconds


def run_search(root: Path, p: Protocol, arm: Arm, repeat: int) -> SearchRun:
    """One real sweep (local Ray, Optuna, MLflow in sqlite), read back from MLflow. A sweep
    an earlier invocation left unfinished in `root` is resumed (the sweeper's --resume)."""
    from ray.tune import Tuner

    from sweeper.tune.driver import SweepOptions, run_sweep, sweep_path
    from sweeper.tune.spaces import load_space

    space_file = root / "space.yaml"
    space_file.write_text(yaml.safe_dump(space_doc(p), sort_keys=False), encoding="utf-8")
    name = f"{arm.key}-r{repeat}"
    uri = f"sqlite:///{root}/mlflow.db"
    opts = SweepOptions(
        space=load_space(str(space_file)), name=name, num_samples=arm.num_samples(p),
        max_concurrent=p.concurrency, seeds=p.seeds, tracking_uri=uri,
        sweep_dir=root / "sweeps", early_stop=arm.early_stop, grace_fraction=p.grace,
        reduction_factor=p.reduction_factor, max_failures=0,
        sampler_seed=p.sampler_seed_start + repeat,
        # Trials completing after C are discarded, so none need train (see protocol_section).
        budget_steps=p.budget + p.trial_steps,
        command="python -m benchmarks.search_efficiency", search=arm.search,
        tpe_startup=p.tpe_startup, tpe_multivariate=p.tpe_multivariate)
    path = sweep_path(opts.sweep_dir, name)
    resume = path.is_dir() and Tuner.can_restore(str(path))
    # Tune's progress tables go to stderr, so stdout carries only the markdown report.
    with contextlib.redirect_stdout(sys.stderr):
        run_sweep(opts, resume=resume)
    return read_search(uri, arm, repeat, p.sampler_seed_start + repeat)


def search_file(root: Path, arm: Arm, repeat: int) -> Path:
    return root / SEARCHES_DIR / f"{search_name(arm, repeat)}.json"


def save_search(root: Path, run: SearchRun) -> None:
    """Write a finished search where load_search finds it (atomically: a kill mid-write
    leaves no half file that a resume would take for a finished search)."""
    path = search_file(root, run.arm, run.repeat)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"arm": run.arm.key, "repeat": run.repeat, "sampler_seed": run.sampler_seed,
           "wall": run.wall, "trials": [dataclasses.asdict(t) for t in run.trials]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=0), encoding="utf-8")
    tmp.replace(path)


def load_search(root: Path, arm: Arm, repeat: int) -> SearchRun | None:
    """A search save_search wrote, or None if there is none."""
    path = search_file(root, arm, repeat)
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    return SearchRun(arm, doc["repeat"], doc["sampler_seed"],
                     tuple(Trial(**t) for t in doc["trials"]), doc["wall"])


def search_name(arm: Arm, repeat: int) -> str:
    return f"{arm.key}-r{repeat}"


def read_search(uri: str, arm: Arm, repeat: int, sampler_seed: int) -> SearchRun:
    """A finished sweep, read back from MLflow."""
    name = search_name(arm, repeat)
    records = reader.load_sweep(uri, name)
    client, _, exp_id = reader.open_experiment(uri, name)
    wall = metrics_of(client.get_run(records.parent_run_id)).get("wall_seconds", math.nan)
    return SearchRun(arm, repeat, sampler_seed, read_trials(client, exp_id, records), wall)


def read_trials(client, exp_id: str, records: reader.SweepRecords) -> tuple[Trial, ...]:
    """Every trial of a sweep, from its MLflow runs, in completion order."""
    info = {r.info.run_id: r.info for r in reader.all_runs(client, exp_id)}
    start_order = sorted(records.trials, key=lambda t: (info[t.run_id].start_time or 0,
                                                        t.trial_id))
    index = {t.run_id: i for i, t in enumerate(start_order)}
    settings = {s.key: s for s in reader.settings(records, confirmed=False)}
    traces = [seed_trace(client, s.run_id) for t in records.trials for s in t.seeds]
    out = []
    for t in records.trials:
        stats = setting_stats(settings[t.run_id])
        seed_metrics = [s.metrics for s in t.seeds]
        finished = t.complete
        end_ms = info[t.run_id].end_time or 0
        spent_steps, spent_seconds = spent_at(traces, end_ms)
        out.append(Trial(
            trial_id=t.trial_id, index=index[t.run_id], end_ms=end_ms,
            steps=sum(int(m.get(names.STEP, 0)) for m in seed_metrics),
            seconds=sum(m.get(names.TRAIN_SECONDS, 0.0) + m.get(names.EVAL_SECONDS, 0.0)
                        for m in seed_metrics),
            finished=finished, success_rate=stats.success_rate if finished else 0.0,
            # The same formula the trial reported to Optuna (sweeper/analyse/objective.py).
            objective=(objective.aggregate(seed_metrics)[names.RUNNING_OBJECTIVE]
                       if finished else math.inf),
            fid_median=stats.fid_median,
            hq_mean=stats.hq_fraction_mean if finished else 0.0,
            spent_steps=spent_steps, spent_seconds=spent_seconds))
    out.sort(key=lambda t: (t.end_ms, t.trial_id))
    return tuple(out)


def seed_trace(client, run_id: str) -> Trace:
    """A seed run's (timestamp, step, trainer-seconds) at each evaluation. The three metrics
    go out in one log_batch per evaluation, so they share a timestamp."""
    hist = {key: {m.step: m for m in history(client, run_id, key)}
            for key in (names.STEP, names.TRAIN_SECONDS, names.EVAL_SECONDS)}
    trace = []
    for step, m in hist[names.STEP].items():
        secs = sum(hist[k][step].value for k in (names.TRAIN_SECONDS, names.EVAL_SECONDS)
                   if step in hist[k])
        trace.append((int(m.timestamp), int(m.value), float(secs)))
    return sorted(trace)


# ----------------------------------------------------------------------------- curves
@dataclass(frozen=True)
class Point:
    """The state of a search right after a trial completed."""

    steps: int  # generator steps the search had spent (trials still running included)
    seconds: float  # the same in trainer-seconds
    trials: int  # trials completed
    best_success: float  # best success rate of a finished trial so far (0 if none yet)
    best_objective: float  # best objective of a finished trial so far (inf if none yet)


def budget_curve(trials: Sequence[Trial]) -> list[Point]:
    """One point per completed trial, in completion order."""
    points, best_s, best_o = [], 0.0, math.inf
    for i, t in enumerate(trials, 1):
        if t.finished:
            best_s, best_o = max(best_s, t.success_rate), min(best_o, t.objective)
        points.append(Point(t.spent_steps, t.spent_seconds, i, best_s, best_o))
    return points


def value_at_compute(curve: Sequence[Point], x: float, attr: str) -> float:
    """The curve's `attr` once x generator steps are spent (before any trial: nothing found)."""
    value = 0.0 if attr == "best_success" else math.inf
    for pt in curve:
        if pt.steps > x:
            break
        value = getattr(pt, attr)
    return value


def value_at_trials(curve: Sequence[Point], k: int, attr: str) -> float:
    """The curve's `attr` after k trials; NaN when the search ran fewer than k."""
    return getattr(curve[k - 1], attr) if len(curve) >= k else math.nan


def first_reach(trials: Sequence[Trial], target: Target) -> Point | None:
    """The point at which the first trial meeting `target` completed, or None."""
    for t, pt in zip(trials, budget_curve(trials), strict=True):
        if target.met(t):
            return pt
    return None


# ----------------------------------------------------------------------------- statistics
def fmt_mean_se(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    if any(math.isinf(v) for v in values):
        # A repeat found nothing finished: the mean is undefined, say so instead of inf.
        found = [v for v in values if math.isfinite(v)]
        return f"none found in {len(values) - len(found)}/{len(values)} repeats"
    return mean_se(values, fmt)


def ratio_text(random_vals: Sequence[float | None], tpe_vals: Sequence[float | None],
               budget: float) -> str:
    """mean(random) / mean(TPE) compute-to-target. A repeat that did not reach the target
    within C needed more than C: with C in its place its arm's mean is a lower bound, so the
    ratio becomes a bound (>= if only random missed, <= if only TPE missed). If both arms
    missed somewhere, there is no bound; the ratio over the repeats both reached (the repeats
    are paired by sampler seed) is given instead, labelled as such."""
    r_miss, t_miss = None in random_vals, None in tpe_vals
    if r_miss and t_miss:
        both = [(r, t) for r, t in zip(random_vals, tpe_vals, strict=True)
                if r is not None and t is not None]
        if not both:
            return "n/a (no repeat where both arms reached it)"
        ratio = statistics.fmean(r for r, _ in both) / statistics.fmean(t for _, t in both)
        return f"n/a over all repeats; {ratio:.2f} over the {len(both)} both reached"
    r = statistics.fmean(budget if v is None else v for v in random_vals)
    t = statistics.fmean(budget if v is None else v for v in tpe_vals)
    return f"{'>= ' if r_miss else '<= ' if t_miss else ''}{r / t:.2f}"


# ----------------------------------------------------------------------------- report
def machine_line(p: Protocol) -> str:
    return machine_header(f"1 torch thread per trial (cpus_per_trial 1), {p.concurrency} "
                          "trials at once, no GPU")


def protocol_section(p: Protocol) -> str:
    tpe, rnd = ARMS
    space = yaml.safe_dump(space_doc(p), sort_keys=False, default_flow_style=None).rstrip()
    return "\n".join([
        "## Protocol", "",
        "Search space (both arms):", "", "```yaml", space, "```", "",
        f"- every setting trains {p.seeds} seeds (0..{p.seeds - 1}, the same for every "
        f"setting) in lockstep; {p.concurrency} trials at once; {p.repeats} repeats of each "
        f"search, sampler seeds {p.sampler_seed_start}..{p.sampler_seed_start + p.repeats - 1} "
        "(the same for both arms)",
        f"- {tpe.label}: Optuna TPESampler(seed, n_startup_trials={p.tpe_startup}, "
        f"multivariate={p.tpe_multivariate}), ASHA on the running objective (grace "
        f"{p.grace:g} x {p.steps} steps, reduction factor {p.reduction_factor}), "
        f"num_samples = ceil({p.tpe_factor:g} x {p.budget_trials}) = {p.tpe_trials}",
        f"- {rnd.label}: Optuna RandomSampler(seed), no early stopping, num_samples = "
        f"{p.budget_trials}",
        f"- the arms differ only in sampler and scheduler; with equal seeds TPE's first "
        f"{p.tpe_startup} (start-up) settings are exactly random search's first "
        f"{p.tpe_startup} (Optuna's TPE draws them from RandomSampler(seed)), so the repeats "
        "are paired",
        f"- compute C = {p.budget_trials} full-budget trials = {p.budget_trials} x {p.steps} "
        f"steps x {p.seeds} seeds = {p.budget} generator steps per search",
        "- compute spent when a trial completes = generator steps trained by then by every "
        "seed run of the search, trials still running included (each seed run's `step` "
        "metric, logged at every evaluation, with its MLflow timestamp; work since a running "
        f"seed's last evaluation, < {p.eval_every} steps, is not yet counted). Only trials "
        "that completed with compute spent <= C count (the TPE arm's later trials are "
        "discarded). ASHA-stopped trials count what they trained (Tune reports "
        "synchronously, so a stopped trial trains nothing after its last report)",
        f"- each search stops once its trials have reported C + one trial = "
        f"{p.budget + p.trial_steps} generator steps (the sweeper's `--budget-steps`; the "
        "margin covers the gap between Tune's reports and the MLflow timestamps above), so "
        "the TPE arm no longer trains trials that would be discarded. Searches saved before "
        "this existed ran to their num_samples; the trials counted are the same",
        "- trainer-seconds = train_seconds + eval_seconds of the seed runs (wall time inside "
        "the trainer, 1 torch thread; inflated when the machine is shared)",
        "- success rate = fraction of a setting's seeds that neither diverged nor failed the "
        f"success rule ({DEFAULT_RULE.describe()}, at the last evaluation); "
        "only finished trials are candidates (an ASHA-stopped trial cannot be recommended); "
        "best success so far is 0 before the first finished trial",
        "- objective (lower is better) = failed seeds + m/(1+m), m = median seed_score",
        "- means are over repeats, ± one standard error"])


def curve_tables(p: Protocol, runs: dict[str, list[SearchRun]]) -> str:
    lines = ["## Budget curves", "",
             "Best **success rate** of a finished trial, and best **objective**, once a given "
             "compute is spent (mean ± s.e. over repeats):", "",
             "| compute (gen steps) | = full trials | " + " | ".join(
                 f"{a.label} success | {a.label} objective" for a in ARMS) + " |",
             "|---|---|" + "---|---|" * len(ARMS)]
    for f in FRACTIONS:
        x = f * p.budget
        cells = []
        for a in ARMS:
            curves = [budget_curve(r.within(p.budget)) for r in runs[a.key]]
            cells.append(fmt_mean_se([value_at_compute(c, x, "best_success") for c in curves]))
            cells.append(fmt_mean_se([value_at_compute(c, x, "best_objective")
                                      for c in curves], "{:.3f}"))
        lines.append(f"| {x:.0f} | {x / p.trial_steps:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "By **trials completed** (within C; '–' where no repeat ran that many):", "",
              "| trials | " + " | ".join(f"{a.label} success" for a in ARMS) + " |",
              "|---|" + "---|" * len(ARMS)]
    for k in trial_marks([len(r.within(p.budget)) for rs in runs.values() for r in rs]):
        cells = []
        for a in ARMS:
            vals = [value_at_trials(budget_curve(r.within(p.budget)), k, "best_success")
                    for r in runs[a.key]]
            ran = [v for v in vals if not math.isnan(v)]
            cell = fmt_mean_se(ran)
            cells.append(cell if len(ran) == len(vals) or not ran
                         else f"{cell} ({len(ran)}/{len(vals)} repeats)")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trial_marks(counts: Sequence[int]) -> list[int]:
    """1, 2, 4, 8, ... below the largest count, and every search's own count."""
    marks, k = set(counts), 1
    while k < max(counts, default=0):
        marks.add(k)
        k *= 2
    return sorted(m for m in marks if m > 0)


def target_table(p: Protocol, runs: dict[str, list[SearchRun]]) -> str:
    lines = ["## Compute to reach a target", ""]
    for t in targets(p):
        lines.append(f"- **{t.key}**: {t.text}")
    lines += ["", "Compute until the first trial meeting the target completed (mean ± s.e. "
              "over the repeats that reached it within C; per-repeat values in brackets, "
              "'-' = not reached within C):", "",
              "| target | arm | reached | gen steps | trials | trainer-s | per repeat (gen "
              "steps) | random / TPE (gen steps) |", "|---|---|---|---|---|---|---|---|"]
    for t in targets(p):
        reach = {a.key: [first_reach(r.within(p.budget), t) for r in runs[a.key]]
                 for a in ARMS}
        steps = {k: [None if pt is None else float(pt.steps) for pt in v]
                 for k, v in reach.items()}
        ratio = ratio_text(steps["random"], steps["tpe-asha"], p.budget)
        for a in ARMS:
            pts = [pt for pt in reach[a.key] if pt is not None]
            per = ", ".join("-" if pt is None else str(pt.steps) for pt in reach[a.key])
            lines.append(
                f"| {t.key} | {a.label} | {len(pts)}/{len(reach[a.key])} | "
                f"{fmt_mean_se([pt.steps for pt in pts], '{:.0f}')} | "
                f"{fmt_mean_se([pt.trials for pt in pts], '{:.1f}')} | "
                f"{fmt_mean_se([pt.seconds for pt in pts], '{:.0f}')} | [{per}] | {ratio} |")
    return "\n".join(lines)


def random_rate_table(p: Protocol, runs: dict[str, list[SearchRun]]) -> str:
    """Random search draws its settings independently from the space and trains each to the
    end, so each of its trials is a Bernoulli draw on each target, and its hit rate pools over
    repeats. Its expected compute to a first hit is then trial_steps / p (a geometric number
    of trials), a number with an interval even where a repeat of the random arm ran out of
    budget before its first hit, which the per-repeat table can only bound."""
    rnd = [t for r in runs["random"] for t in r.trials]
    if not rnd:
        return ""
    lines = ["## Random search's hit rate, pooled over repeats", "",
             f"Random search's {len(rnd)} trials (all its repeats; each setting an "
             "independent draw trained to the end) met each target at rate p; expected "
             f"compute to a first hit = {p.trial_steps} gen steps per trial / p (one trial "
             f"at a time; with {p.concurrency} at once, up to one more trial's work is in "
             "flight). TPE + ASHA's mean counts a repeat that missed the target as C, so "
             "where it missed, its mean is a lower bound and the ratio an upper bound (<=). "
             "Intervals are Wilson 95% on p.", "",
             "| target | random trials meeting it | p [95%] | expected gen steps to a first hit "
             "[95%] | TPE + ASHA gen steps (mean, reached) | expected random / TPE [95%] |",
             "|---|---|---|---|---|---|"]

    def expected(q: float) -> float:
        return p.trial_steps / q if q > 0 else math.inf

    for t in targets(p):
        k = sum(1 for x in rnd if t.met(x))
        lo, hi = wilson_interval(k, len(rnd))
        tpe = [first_reach(r.within(p.budget), t) for r in runs["tpe-asha"]]
        reached = sum(pt is not None for pt in tpe)
        tpe_mean = statistics.fmean(p.budget if pt is None else pt.steps for pt in tpe)
        bound = "<= " if reached < len(tpe) else ""
        e, e_lo, e_hi = expected(k / len(rnd)), expected(hi), expected(lo)
        lines.append(
            f"| {t.key} | {k}/{len(rnd)} | {k / len(rnd):.3f} [{lo:.3f}, {hi:.3f}] | "
            f"{_num(e, '.0f')} [{_num(e_lo, '.0f')}, {_num(e_hi, '.0f')}] | {tpe_mean:.0f} "
            f"({reached}/{len(tpe)}) | {bound}{_num(e / tpe_mean, '.2f')} "
            f"[{_num(e_lo / tpe_mean, '.2f')}, {_num(e_hi / tpe_mean, '.2f')}] |")
    return "\n".join(lines)


def _num(x: float, spec: str) -> str:
    return "inf" if math.isinf(x) else format(x, spec)


def repeats_table(p: Protocol, runs: dict[str, list[SearchRun]]) -> str:
    lines = ["## Every search", "",
             f"'TPE-guided': counted trials past TPE's {p.tpe_startup} random start-up "
             "suggestions (in start order). 'stable': counted finished trials with success "
             "rate 1.0 (in brackets: of them TPE-guided), a measure of how often the sampler "
             "proposes a stable setting. 'spent at last': compute spent when the last counted "
             "trial completed.", "",
             "| arm | repeat (sampler seed) | trials run | counted (within C) | finished | "
             "stopped early | TPE-guided | stable | gen steps run | spent at last | trainer-s "
             "at last | best success | best objective | best median FID | best mean HQ | "
             "Tune wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in ARMS:
        for r in runs[a.key]:
            kept = r.within(p.budget)
            done = [t for t in kept if t.finished]
            best = min(done, key=lambda t: t.objective, default=None)
            tpe = a.search == "tpe"
            guided = str(sum(t.index >= p.tpe_startup for t in kept)) if tpe else "-"
            stable = [t for t in done if t.success_rate >= 1.0]
            late = sum(t.index >= p.tpe_startup for t in stable)
            lines.append(
                f"| {a.label} | {r.repeat} ({r.sampler_seed}) | {len(r.trials)} | {len(kept)} "
                f"| {len(done)} | {len(kept) - len(done)} | {guided} | "
                f"{len(stable)}{f' ({late})' if tpe else ''} | "
                f"{sum(t.steps for t in r.trials)} | "
                f"{max((t.spent_steps for t in kept), default=0)} | "
                f"{max((t.spent_seconds for t in kept), default=0.0):.0f} | "
                f"{max((t.success_rate for t in done), default=0.0):.2f} | "
                f"{'-' if best is None else f'{best.objective:.4f}'} | "
                f"{'-' if best is None else f'{best.fid_median:.3g}'} | "
                f"{'-' if best is None else f'{best.hq_mean:.1%}'} | {r.wall:.0f} |")
    return "\n".join(lines)


def warnings_section(p: Protocol, runs: dict[str, list[SearchRun]]) -> str:
    """Honest notes on anything that bends the comparison."""
    notes = []
    for r in runs["tpe-asha"]:
        used = sum(t.steps for t in r.trials)
        if used < p.budget:
            notes.append(f"- TPE + ASHA repeat {r.repeat} ran out of trials at {used} < C = "
                         f"{p.budget} generator steps: its curve stays flat after that (raise "
                         "--tpe-factor).")
    for a in ARMS:
        for r in runs[a.key]:
            short = p.budget - sum(t.steps for t in r.trials)
            if a.key == "random" and short > 0:
                notes.append(f"- random repeat {r.repeat} used {short} generator steps less "
                             "than C (diverged seeds stop early).")
    return "\n".join(["## Notes", "", *notes]) if notes else ""


# ----------------------------------------------------------------------------- plot
def plot(p: Protocol, runs: dict[str, list[SearchRun]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.linspace(0, p.budget, GRID_POINTS)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = {"tpe-asha": "tab:blue", "random": "tab:orange"}
    for a in ARMS:
        curves = [budget_curve(r.within(p.budget)) for r in runs[a.key]]
        for ax, attr in zip(axes[:2], ("best_success", "best_objective"), strict=True):
            ys = np.array([[value_at_compute(c, x, attr) for x in grid] for c in curves])
            ys[np.isinf(ys)] = np.nan  # nothing finished yet: no objective to draw
            _band(ax, grid / p.trial_steps, ys, colors[a.key], a.label)
        most = max(len(c) for c in curves)
        ks = np.arange(1, most + 1)
        ys = np.array([[value_at_trials(c, k, "best_success") for k in ks] for c in curves])
        _band(axes[2], ks, ys, colors[a.key], a.label)
    axes[0].set(xlabel="compute (full-budget trials' worth of generator steps)",
                ylabel="best success rate of a finished trial",
                title=f"Budget curve, mean ± s.e. over {p.repeats} repeat(s)")
    # Log scale: the objective's integer part counts failed seeds and stable settings sit
    # near 0.005, so a linear axis would hide every difference between stable settings.
    axes[1].set(xlabel="compute (full-budget trials' worth of generator steps)",
                ylabel="best objective (lower is better, log scale)",
                title="Best objective so far", yscale="log")
    axes[2].set(xlabel="trials completed (within C)", ylabel="best success rate",
                title="Budget curve by trial count")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    axes[0].set_ylim(-0.05, 1.05)
    axes[2].set_ylim(-0.05, 1.05)
    fig.suptitle(f"WGAN-GP on {p.dataset}: TPE + ASHA vs random search at equal compute "
                 f"(C = {p.budget_trials} trials x {p.steps} steps x {p.seeds} seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _band(ax, x, ys, color: str, label: str) -> None:
    """Mean line and a ± s.e. band over repeats; only where every repeat has a value."""
    import numpy as np

    mean = ys.mean(axis=0)  # NaN where some repeat has no value: not drawn
    se = ys.std(axis=0, ddof=1) / np.sqrt(len(ys)) if len(ys) > 1 else np.zeros_like(mean)
    for y in ys:
        ax.plot(x, y, color=color, alpha=0.25, lw=0.8, drawstyle="steps-post")
    ax.plot(x, mean, color=color, lw=2, label=label, drawstyle="steps-post")
    ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.2, step="post")


# ----------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from sweeper.tune.driver import SweepOptions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each search")
    ap.add_argument("--budget-trials", type=int, default=10,
                    help="compute C, in full-budget trials (random search runs this many)")
    ap.add_argument("--tpe-factor", type=float, default=2.0,
                    help="TPE + ASHA runs ceil(factor x budget-trials) trials, then is cut at C")
    ap.add_argument("--dataset", choices=("ring8", "grid25"), default="ring8")
    ap.add_argument("--steps", type=int, default=600, help="generator steps per seed run")
    ap.add_argument("--eval-every", type=int, default=None,
                    help="steps between evaluations (ASHA's reports) [default: steps / 20, "
                    "at least 100]")
    ap.add_argument("--lr-schedule", choices=("constant", "linear"), default=None,
                    help="the space's fixed learning-rate schedule [default: linear on grid25, "
                    "as the recommended settings; constant on ring8, as issue 6's run]")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per setting")
    ap.add_argument("--tpe-startup", type=int, default=SweepOptions.tpe_startup,
                    help="TPE's random start-up trials (sweeper run --tpe-startup)")
    ap.add_argument("--tpe-multivariate", action="store_true",
                    help="Optuna's multivariate TPE (sweeper run --tpe-multivariate)")
    ap.add_argument("--hq-target", type=float, default=0.0,
                    help="add target T3: every seed succeeds and mean HQ >= this (0-1; "
                    "issue 15 asks 0.6 on grid25)")
    ap.add_argument("--sampler-seed-start", type=int, default=0,
                    help="repeat k uses sampler seed S + k; pick seeds no sweep behind a "
                    "setting you test for used (issue 15's run: 100)")
    ap.add_argument("--fid-target", type=float, default=None,
                    help=f"median-FID threshold of the harder target T2 [default: "
                    f"{FID_TARGET:g}; with --reanalyze: the run's]")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    ap.add_argument("--plot", type=Path, default=None,
                    help=f"figure path [default: {DEFAULT_PLOT.relative_to(ROOT)}; with "
                    "--smoke-test a file in the temp folder]")
    ap.add_argument("--state-dir", type=Path, default=None,
                    help="keep sweep state and the MLflow store (sqlite) here, for "
                    "--reanalyze [default: a temporary folder, deleted]")
    ap.add_argument("--reanalyze", action="store_true",
                    help="train nothing: report on the searches kept in --state-dir")
    ap.add_argument("--resume", action="store_true",
                    help="continue the run in --state-dir with its saved protocol (the other "
                    "options are ignored): finished searches are kept, an interrupted one "
                    "resumes, the rest run. --state-dir may hold only protocol.json and "
                    "searches/*.json, e.g. committed from another machine")
    ap.add_argument("--smoke-test", action="store_true",
                    help="1 repeat, 3-4 tiny trials per arm: every code path in ~2 minutes")
    return ap.parse_args(argv)


def protocol_from(a: argparse.Namespace) -> Protocol:
    fid = FID_TARGET if a.fid_target is None else a.fid_target
    if a.reanalyze or a.resume:
        saved = json.loads((a.state_dir / PROTOCOL_FILE).read_text(encoding="utf-8"))
        p = Protocol(**saved)
        return p if a.fid_target is None else dataclasses.replace(p, fid_target=fid)
    if a.smoke_test:
        return Protocol(steps=20, eval_every=10, eval_samples=500, hidden=8, batch_size=64,
                        seeds=2, concurrency=2, repeats=1, budget_trials=3, tpe_factor=1.2,
                        fid_target=fid, tpe_startup=a.tpe_startup,
                        tpe_multivariate=a.tpe_multivariate, dataset=a.dataset,
                        hq_target=a.hq_target)
    schedule = a.lr_schedule or ("linear" if a.dataset == "grid25" else "constant")
    return Protocol(steps=a.steps, eval_every=a.eval_every or max(100, a.steps // 20),
                    eval_samples=2500, hidden=64, batch_size=128, seeds=a.seeds,
                    concurrency=2, repeats=a.repeats, budget_trials=a.budget_trials,
                    tpe_factor=a.tpe_factor, fid_target=fid, tpe_startup=a.tpe_startup,
                    tpe_multivariate=a.tpe_multivariate, dataset=a.dataset,
                    hq_target=a.hq_target, lr_schedule=schedule,
                    sampler_seed_start=a.sampler_seed_start)


def run_all(root: Path, p: Protocol, t0: float) -> dict[str, list[SearchRun]]:
    """Every search of the protocol, repeats outermost and the arms interleaved, so a change
    in machine load (the machine is shared) hits both arms alike. Searches already saved in
    `root` (a resumed run) are kept, not trained again."""
    (root / PROTOCOL_FILE).write_text(json.dumps(dataclasses.asdict(p), indent=1),
                                      encoding="utf-8")
    (root / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    runs: dict[str, list[SearchRun]] = {arm.key: [] for arm in ARMS}
    with Progress(p.repeats * len(ARMS), "search_efficiency", "searches") as bar:
        for repeat in range(p.repeats):
            for arm in ARMS:
                r = load_search(root, arm, repeat)
                kept = r is not None
                if r is None:
                    r = run_search(root, p, arm, repeat)
                    save_search(root, r)
                runs[arm.key].append(r)
                bar.write(f"[{time.perf_counter() - t0:.0f} s] {arm.label} repeat {repeat}"
                          f"{' (kept from an earlier invocation)' if kept else ''}: "
                          f"{len(r.trials)} trials, {sum(t.steps for t in r.trials)} gen "
                          f"steps, {r.wall:.0f} s Tune wall")
                bar.update_to(bar.n + 1)
    return runs


def read_all(root: Path, p: Protocol) -> dict[str, list[SearchRun]]:
    """The saved searches; a state dir from before they were saved is read from MLflow.
    A run still going (split over sessions) reports on its first repeats whose searches
    are all saved: `interim_repeats` says how many."""
    if not (root / SEARCHES_DIR).is_dir():  # a state dir from before searches were saved
        uri = f"sqlite:///{root}/mlflow.db"
        return {arm.key: [read_search(uri, arm, r, p.sampler_seed_start + r)
                          for r in range(p.repeats)] for arm in ARMS}
    k = interim_repeats(root, p)
    if k == 0:
        raise UserError(f"no repeat of the run in {root} has all its searches saved yet; "
                        "run --resume until repeat 0 of every arm is in")
    return {arm.key: [load_search(root, arm, r) for r in range(k)] for arm in ARMS}


def interim_repeats(root: Path, p: Protocol) -> int:
    """How many leading repeats have every arm's search saved (p.repeats when all are)."""
    k = 0
    while k < p.repeats and all(search_file(root, arm, k).is_file() for arm in ARMS):
        k += 1
    return k


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    for flag, given in (("--reanalyze", a.reanalyze), ("--resume", a.resume)):
        if given and not (a.state_dir and (a.state_dir / PROTOCOL_FILE).is_file()):
            print(f"error: {flag} needs --state-dir DIR holding {PROTOCOL_FILE} (a run made "
                  "with --state-dir)", file=sys.stderr)
            return 2
    if a.reanalyze and a.resume:
        print("error: --reanalyze trains nothing and --resume trains what is left; pass one",
              file=sys.stderr)
        return 2
    if not (a.reanalyze or a.resume) and a.state_dir and (a.state_dir / PROTOCOL_FILE).exists():
        print(f"error: {a.state_dir} already holds a run; pass --resume to continue it, "
              "--reanalyze to report on it, or another --state-dir", file=sys.stderr)
        return 2
    if not 0 <= a.hq_target <= 1:
        print(f"error: --hq-target {a.hq_target:g} is a fraction; give a value in [0, 1], "
              "e.g. 0.6", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    p = protocol_from(a)
    plot_path = a.plot or (Path(tempfile.gettempdir()) / "search_efficiency_smoke.png"
                           if a.smoke_test else DEFAULT_PLOT)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if a.state_dir:
            root = a.state_dir.resolve()
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="search-eff-")))
        try:
            runs = read_all(root, p) if a.reanalyze else run_all(root, p, t0)
        except UserError as e:  # e.g. an interrupted sweep whose Tune state is damaged
            print(f"error: {e}", file=sys.stderr)
            return 2
    done = len(runs[ARMS[0].key])
    interim = (f" (INTERIM: {done} of the protocol's {p.repeats} repeats are in; the run is "
               "still going, and these tables cover only those)" if done < p.repeats else "")
    p = dataclasses.replace(p, repeats=done)
    plot(p, runs, plot_path)
    wall = time.perf_counter() - t0
    busy = sum(t.seconds for rs in runs.values() for r in rs for t in r.trials)
    report = "\n\n".join(s for s in [
        "# Search efficiency: TPE + ASHA vs random search at equal compute"
        + (" (SMOKE TEST: tiny budget, numbers mean nothing)" if a.smoke_test else "")
        + interim,
        machine_line(p), protocol_section(p), target_table(p, runs),
        random_rate_table(p, runs), curve_tables(p, runs),
        repeats_table(p, runs), warnings_section(p, runs),
        f"Figure: {plot_path}",
        ("re-analysis of the searches in " + str(a.state_dir) + f" ({wall:.0f} s)"
         if a.reanalyze else f"total wall time: {wall:.0f} s ({wall / 60:.1f} min)")
        + f"; trainer-seconds of every trial run (discarded ones included): {busy:.0f} s "
        f"({busy / 60:.1f} min)"] if s)
    print(report)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
