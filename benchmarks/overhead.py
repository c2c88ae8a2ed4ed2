"""Cost and scale (issue 6, part 3): what the trainer, the sweep machinery and a cluster cost.

Sections, printed as markdown (stdout carries only the report; Ray's own output goes to stderr):
  Trainer  - the Trainer's step time against a minimal PyTorch loop of the same models
             (benchmarks/trainer_overhead.py), as a ratio.
  Sweep    - a real sweep (local Ray, Optuna, MLflow in sqlite) on this machine's CPUs:
             efficiency = trainer seconds / (wall x concurrency), and where the other seconds
             go (start-up, inside the trial function, between trials, shut-down), per trial.
  Seeds    - a sweep of k-seed trials with the seeds as one batched population against the
             same sweep with the seeds trained one after another, side by side: cost per
             setting (wall and trainer seconds) and the ratio.
  Scaling  - the same sweep on a 1-node and on a 2-node `ray start` cluster (1 CPU each, token
             auth): wall(1 node) / wall(2 nodes), and what limits it, from measured numbers.
  Memory   - peak RSS of the driver, of one trial (Ray worker) process and of Ray's services.
  Budget   - cost per trial and overhead fraction against the generator-step budget, plotted
             (log x) to --plot, with the budget where the overhead falls below 10%.

Usage:
    python -m benchmarks.overhead                                # ~10-15 min on 2 quiet cores
    python -m benchmarks.overhead --smoke-test --out o.md --plot p.png   # every section, ~2 min
    python -m benchmarks.overhead --trials 6 --steps 400 --budgets 25,100,400,1600,3200 \\
        --budget-trials 4 --out overhead.md --plot docs/img/overhead_vs_steps.png
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# Before Ray is imported anywhere: no usage-stats reporting from a benchmark.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import psutil
import torch

from benchmarks import sweep_overhead, trainer_overhead
from benchmarks._common import machine_header
from benchmarks._procs import ray_cluster
from sweeper.track import store, tags

ROOT = Path(__file__).resolve().parents[1]

OVERHEAD_TARGET = 0.10  # "overhead stops mattering" below this fraction of a trial's cost
SAMPLE_S = 0.25  # memory sampling interval
# A trial's actor is named after its trainable (sweeper.tune.trial.SweepTrial, known to Tune
# as run_trial); its worker process is titled ray::run_trial (ray::run_trial.train while
# training, ray::IDLE before). The kernel's process name keeps its first 15 characters.
TRIAL_TITLE = "ray::run_trial"
COMM_LEN = 15
MIB = 2**20


# ---------------------------------------------------------------------------- machine


def load_line(when: str) -> str:
    """1-minute load average plus how busy all CPUs were over the last second.

    The machine may be shared: a load near or above the CPU count, or CPUs busy before this
    benchmark starts, means other processes competed with the measurements.
    """
    busy = psutil.cpu_percent(interval=1.0)
    return (f"1-min load average {when}: {os.getloadavg()[0]:.2f} "
            f"(all CPUs {busy:.0f}% busy over 1 s)")


# ---------------------------------------------------------------------------- output


class Report:
    """Markdown lines, printed as they come (a long run shows progress) and kept for --out."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
            self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send fd 1 to stderr: Ray Tune prints progress tables and worker logs on stdout, and
    processes Ray spawns inherit fd 1, so only a file-descriptor swap keeps stdout clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# ---------------------------------------------------------------------------- trainer


def trainer_section(report: Report, smoke: bool) -> None:
    # A trial gets 1 CPU and so 1 torch thread (trial.py calls set_threads(cpus_per_trial)).
    torch.set_num_threads(1)
    repeats = 2 if smoke else 15
    report.add("## Trainer: step time against a minimal PyTorch loop\n")
    rows = []
    for loss in ("wgan-gp", "bce-ns"):
        cfg, m = trainer_overhead.measure_loss(loss, smoke_test=smoke, repeats=repeats)
        rows.append(f"| {loss} | {cfg.n_critic} | {cfg.hidden} | {cfg.batch_size} | "
                    f"{1e3 * m['trainer_step']:.2f} | {1e3 * m['minimal_step']:.2f} | "
                    f"{m['ratio']:.3f} [{m['ratio_lo']:.3f}, {m['ratio_hi']:.3f}] | "
                    f"{m['wall_ratio']:.3f} | {m['difference']:.1e} | "
                    f"{m['eval_fraction']:.4f} |")
    report.add(f"1 torch thread, ring8, CPU-time medians of {repeats} interleaved repeats "
               "(benchmarks/trainer_overhead.py; the Trainer is a population of one, the "
               "minimal loop is trainers/reference.py; their weights after two steps from the "
               "same seed are compared)\n",
               "| loss | n_critic | hidden | batch | Trainer CPU ms/step | minimal loop CPU "
               "ms/step | ratio (median [min, max]) | wall-time ratio | weight difference | "
               "eval / train time |",
               "|---|---|---|---|---|---|---|---|---|---|", *rows, "")


# ---------------------------------------------------------------------------- memory


def _vm_hwm(pid: int) -> int:
    """The kernel's peak-RSS high-water mark (VmHWM) of a process, in bytes; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _title(p: psutil.Process) -> str:
    """Ray renames its workers (setproctitle), so the title is the first cmdline word; for
    other processes, the program's base name."""
    cmd = p.cmdline()
    return Path(cmd[0].split()[0]).name if cmd and cmd[0] else p.name()


def _is_trial(title: str) -> bool:
    return title[:COMM_LEN].startswith(TRIAL_TITLE[:COMM_LEN])


@dataclass
class Memory:
    driver_before: int = 0
    driver_peak: int = 0
    trial_peak: int = 0
    services_peak: int = 0  # sum over Ray's other processes (GCS, raylet, agents, idle workers)
    trial_pids: set[int] = field(default_factory=set)
    titles: set[str] = field(default_factory=set)


class MemorySampler:
    """Samples, in a background thread, the RSS of this process (the driver) and of its child
    processes: with a local ray.init the driver starts GCS and raylet, and the raylet starts
    the workers, so the whole local Ray lives in this process tree.

    A trial process's peak is also taken from VmHWM, which the kernel keeps for the whole life
    of the process, so a spike between two samples still counts.
    """

    def __init__(self, interval: float = SAMPLE_S) -> None:
        self.interval = interval
        self.mem = Memory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._me = psutil.Process()
        self._hwm_before = 0

    def __enter__(self) -> Memory:
        self.mem.driver_before = self.mem.driver_peak = self._me.memory_info().rss
        self._hwm_before = _vm_hwm(self._me.pid)
        self._thread.start()
        return self.mem

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        # The driver's own high-water mark covers its whole life; it speaks for this sweep
        # only if it rose during it.
        hwm = _vm_hwm(self._me.pid)
        if hwm > self._hwm_before:
            self.mem.driver_peak = max(self.mem.driver_peak, hwm)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        m = self.mem
        m.driver_peak = max(m.driver_peak, self._me.memory_info().rss)
        services = 0
        for child in self._me.children(recursive=True):
            try:
                title, rss = _title(child), child.memory_info().rss
            except psutil.Error:
                continue  # it ended between listing and reading
            m.titles.add(title)
            if _is_trial(title) or child.pid in m.trial_pids:
                m.trial_pids.add(child.pid)
                m.trial_peak = max(m.trial_peak, rss, _vm_hwm(child.pid))
            else:
                services += rss
        m.services_peak = max(m.services_peak, services)


# ---------------------------------------------------------------------------- sweeps


@dataclass
class SweepResult:
    """One measured sweep. Times in seconds; `busy` is the trainers' own train + eval time."""

    label: str
    steps: int
    trials: int
    concurrency: int
    wall: float
    busy: float
    startup: float  # sweep start -> first trial's MLflow run opens (Ray, Tune, first workers)
    shutdown: float  # last trial run closed -> run_sweep returns (final reports, ray.shutdown)
    in_trial: float  # inside the trial function, outside the trainer (MLflow, plots, reports)
    nodes: int  # distinct Ray nodes the trials ran on
    memory: Memory | None = None

    @property
    def slots(self) -> float:
        """CPU-slot seconds the sweep held: wall x concurrency."""
        return self.wall * self.concurrency

    @property
    def efficiency(self) -> float:
        return self.busy / self.slots

    @property
    def trainer_per_trial(self) -> float:
        return self.busy / self.trials

    @property
    def cost_per_trial(self) -> float:
        return self.slots / self.trials

    @property
    def overhead_per_trial(self) -> float:
        """All-in: everything but the trainer, the sweep's start-up and shut-down included."""
        return (self.slots - self.busy) / self.trials

    @property
    def fixed(self) -> float:
        return self.startup + self.shutdown

    @property
    def steady_overhead_per_trial(self) -> float:
        """Overhead per trial without the one-off start-up and shut-down: what each further
        trial of a long sweep costs beyond its training."""
        return (self.slots - self.fixed * self.concurrency - self.busy) / self.trials

    @property
    def between(self) -> float:
        """Slot seconds outside any trial's MLflow run and outside start-up/shut-down."""
        return self.slots - self.fixed * self.concurrency - self.busy - self.in_trial


def trial_timeline(uri: str, name: str) -> tuple[list[tuple[float, float]], int]:
    """([(start, end)] epoch seconds of each trial's MLflow run, number of Ray nodes used)."""
    c = store.client(uri)
    exp = c.get_experiment_by_name(name)
    runs = c.search_runs([exp.experiment_id], max_results=1000,
                         filter_string=f"tags.`{tags.TAG_KIND}` = 'trial'")
    spans = [(r.info.start_time / 1e3, r.info.end_time / 1e3) for r in runs]
    nodes = {r.data.tags.get(tags.TAG_NODE_ID) for r in runs}
    return spans, len(nodes)


def measured_sweep(label: str, *, steps: int, trials: int, hidden: int, concurrency: int,
                   address: str | None = None, memory: bool = False) -> SweepResult:
    """One sweep through sweep_overhead.one_sweep in a fresh temporary directory, with its
    time split up from the trial runs' MLflow timestamps."""
    name = f"overhead-{steps}-{concurrency}"
    with tempfile.TemporaryDirectory(prefix="overhead-") as d, stdout_to_stderr():
        sampler = MemorySampler() if memory else None
        if sampler:
            sampler.__enter__()
        try:
            r = sweep_overhead.one_sweep(Path(d), trials=trials, steps=steps, seeds=1,
                                         reuse=True, concurrency=concurrency, hidden=hidden,
                                         address=address, name=name)
        finally:
            if sampler:
                sampler.__exit__()
        spans, nodes = trial_timeline(f"sqlite:///{d}/mlflow.db", name)
    start, end = r["started_at"], r["started_at"] + r["wall"]
    return SweepResult(
        label=label, steps=steps, trials=trials, concurrency=concurrency, wall=r["wall"],
        busy=r["busy"], startup=min(s for s, _ in spans) - start,
        shutdown=end - max(e for _, e in spans),
        in_trial=sum(e - s for s, e in spans) - r["busy"], nodes=nodes,
        memory=sampler.mem if sampler else None)


# ---------------------------------------------------------------------------- seeds section


def seeds_section(report: Report, *, steps: int, trials: int, hidden: int, seeds: int) -> None:
    """The same sweep twice, its trials' seeds one after another and then as a population."""
    concurrency = min(2, len(os.sched_getaffinity(0)))
    got = {}
    for batch in (False, True):
        with tempfile.TemporaryDirectory(prefix="overhead-seeds-") as d, stdout_to_stderr():
            got[batch] = sweep_overhead.one_sweep(
                Path(d), trials=trials, steps=steps, seeds=seeds, reuse=True,
                concurrency=concurrency, hidden=hidden, name=f"seeds-batched-{batch}",
                batch_seeds=batch)
    report.add(f"## Seeds: {seeds}-seed trials as one population vs one after another\n",
               f"{trials} trials x {seeds} seeds, WGAN-GP ring8, {steps} generator steps, "
               f"n_critic 5, hidden {hidden}, batch 128, {concurrency} trials at once, 1 CPU "
               "each (local Ray, Optuna, MLflow in sqlite); both sweeps in this run, one "
               "after the other. Trainer seconds = the seed runs' train + eval seconds (a "
               "population charges each member its share).\n",
               "| seeds trained | sweep wall s | wall s per setting | trainer s per setting |",
               "|---|---|---|---|")
    for batch, label in ((False, "one after another"), (True, "as one population")):
        r = got[batch]
        report.add(f"| {label} | {r['wall']:.1f} | {r['wall'] * concurrency / trials:.2f} | "
                   f"{r['busy'] / trials:.2f} |")
    sep, pop = got[False], got[True]
    report.add("", f"cost per setting, one after another / as one population: wall "
               f"{sep['wall'] / pop['wall']:.2f}x, trainer seconds "
               f"{sep['busy'] / pop['busy']:.2f}x", "")


# ---------------------------------------------------------------------------- sweep section


def sweep_section(report: Report, r: SweepResult, hidden: int) -> None:
    n, c = r.trials, r.concurrency
    report.add(f"## Sweep: efficiency and per-trial overhead on {c} CPUs\n",
               f"{n} trials x 1 seed, WGAN-GP ring8, {r.steps} generator steps, n_critic 5, "
               f"hidden {hidden}, batch 128, 4 evaluations per trial; local Ray, Optuna TPE, "
               f"MLflow in sqlite, {c} trials at once (1 CPU each), reuse_actors on (the CLI "
               "default)\n",
               "| | wall s | trainer s (sum) | trainer s/trial | efficiency | "
               "overhead s/trial (all-in) | overhead s/trial (excl. start-up, shut-down) |",
               "|---|---|---|---|---|---|---|",
               f"| {r.label} | {r.wall:.1f} | {r.busy:.1f} | {r.trainer_per_trial:.2f} | "
               f"{r.efficiency:.3f} | {r.overhead_per_trial:.2f} | "
               f"{r.steady_overhead_per_trial:.2f} |", "",
               f"Where the {r.slots:.1f} slot-seconds (wall x {c}) went:\n",
               "| part | slot-seconds | s per trial | share |", "|---|---|---|---|")
    parts = [("trainer: training steps + evaluations (MLflow train/eval_seconds)", r.busy),
             ("sweep start-up (start -> first trial's MLflow run: Ray start, Tune + Optuna "
              "set-up, worker spawn and imports) x concurrency", r.startup * c),
             ("inside the trial function, outside the trainer (MLflow log_batch, sample "
              "plots, Tune report + checkpoint per evaluation)", r.in_trial),
             ("between trial runs (scheduling, Trainer build, final report and checkpoint, "
              "actor reuse, idle slot)", r.between),
             ("sweep shut-down (last trial run closed -> run_sweep returns) x concurrency",
              r.shutdown * c)]
    for text, secs in parts:
        report.add(f"| {text} | {secs:.1f} | {secs / n:.2f} | {secs / r.slots:.1%} |")
    report.add("")


# ---------------------------------------------------------------------------- scaling


def cluster_sweep(env: dict[str, str], address: str, label: str, *, steps: int, trials: int,
                  hidden: int, concurrency: int) -> SweepResult:
    """measured_sweep in a child process whose environment is the cluster's from the start.

    Ray reads RAY_AUTH_MODE / RAY_AUTH_TOKEN once per process (at import, then cached), so a
    driver that already ran a local Ray cannot switch to the cluster's token by os.environ;
    a fresh process with env=cluster.env can (as `sweeper run` in load_test.py does).
    """
    spec = {"label": label, "steps": steps, "trials": trials, "hidden": hidden,
            "concurrency": concurrency, "address": address}
    p = subprocess.run([sys.executable, "-m", "benchmarks.overhead", "--sweep-json",
                        json.dumps(spec)], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                       timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"the {label} sweep failed (exit {p.returncode}); see stderr above")
    return SweepResult(**json.loads(p.stdout.strip().splitlines()[-1]))


def scaling_runs(*, steps: int, trials: int, hidden: int) -> tuple[SweepResult, SweepResult,
                                                                    float, float]:
    """The same sweep on a 1-node `ray start` cluster, then on the same cluster with a second
    node added (1 CPU each). Returns both and the seconds to start the head / add a node."""
    sizes = {"steps": steps, "trials": trials, "hidden": hidden}
    t0 = time.perf_counter()
    with stdout_to_stderr(), ray_cluster(nodes=1, cpus_per_node=1) as cluster:
        head_s = time.perf_counter() - t0
        one = cluster_sweep(cluster.env, cluster.address, "1 node", concurrency=1, **sizes)
        t1 = time.perf_counter()
        cluster.add_worker(1)
        cluster.wait_for_nodes(2)
        add_s = time.perf_counter() - t1
        two = cluster_sweep(cluster.env, cluster.address, "2 nodes", concurrency=2, **sizes)
    return one, two, head_s, add_s


def scaling_section(report: Report, one: SweepResult, two: SweepResult, head_s: float,
                    add_s: float) -> None:
    n = one.trials
    speedup = one.wall / two.wall
    rounds = math.ceil(n / 2)
    # Best case on 2 nodes: the fixed part stays, the per-trial part splits over 2 slots.
    per_trial_1 = (one.wall - one.fixed) / n
    best_two = one.fixed + rounds * per_trial_1
    slowdown = two.trainer_per_trial / one.trainer_per_trial
    overhead_growth = two.steady_overhead_per_trial / one.steady_overhead_per_trial
    report.add("## Scaling: 1 node against 2 nodes\n",
               f"The same sweep ({n} trials, {one.steps} steps) against a local `ray start` "
               f"cluster with token auth, 1 CPU per node, driven by a fresh process holding the "
               f"cluster's token; head started "
               f"in {head_s:.1f} s, second node added in {add_s:.1f} s (not in the walls)\n",
               "| cluster | trials at once | nodes used | wall s | trainer s/trial | "
               "start-up s | shut-down s | overhead s/trial (all-in) | efficiency |",
               "|---|---|---|---|---|---|---|---|---|")
    for r in (one, two):
        report.add(f"| {r.label} | {r.concurrency} | {r.nodes} | {r.wall:.1f} | "
                   f"{r.trainer_per_trial:.2f} | {r.startup:.1f} | {r.shutdown:.1f} | "
                   f"{r.overhead_per_trial:.2f} | {r.efficiency:.3f} |")
    report.add("", f"**wall(1 node) / wall(2 nodes) = {speedup:.2f}** (2.00 would be perfect). "
               "What limits it, measured:\n",
               f"- Fixed cost: start-up + shut-down took {one.fixed:.1f} s on 1 node and "
               f"{two.fixed:.1f} s on 2 nodes ({two.fixed / two.wall:.0%} of the 2-node wall); "
               "a second node does not shorten it. With it and the 1-node cost per trial "
               f"({per_trial_1:.2f} s, trainer {one.trainer_per_trial:.2f} s + overhead "
               f"{per_trial_1 - one.trainer_per_trial:.2f} s), the best 2-node wall is "
               f"{best_two:.1f} s, a speedup of at most {one.wall / best_two:.2f}.",
               f"- Shared cores: with two trials at once, a trial's own trainer time went from "
               f"{one.trainer_per_trial:.2f} s to {two.trainer_per_trial:.2f} s "
               f"(x{slowdown:.2f}) and its overhead outside the trainer (start-up and shut-down "
               f"excluded) from {one.steady_overhead_per_trial:.2f} s to "
               f"{two.steady_overhead_per_trial:.2f} s (x{overhead_growth:.2f}). Both nodes are "
               f"processes on this machine's {os.cpu_count()} cores, beside the driver, the GCS, "
               "two raylets and whatever else runs here (see the load average), so two nodes "
               "add no cores: x1.00 here would mean the machine had a core to spare per trial.",
               "- Per-trial overhead is paid by every trial on whichever node runs it: it "
               "splits over the nodes like training does, but it is the larger part of a short "
               "trial (see the budget section for where it stops mattering).",
               f"- Tail: {n} trials on 2 slots take {rounds} round(s); "
               + (f"with an odd count the last round runs on one node while the other idles "
                  f"(at best {n / (2 * rounds):.0%} of the 2-node capacity)."
                  if n % 2 else "the count is even, so no round runs on one node alone "
                  "(an odd count would leave one node idle in the last round)."),
               f"- Placement: trials ran on {two.nodes} node(s) of 2.", "")


# ---------------------------------------------------------------------------- memory section


def memory_section(report: Report, results: list[SweepResult]) -> None:
    report.add("## Memory: peak RSS (MiB)\n",
               f"Sampled every {SAMPLE_S} s with psutil during each local sweep; the driver is "
               "this process, a trial process is a Ray worker titled "
               f"`{TRIAL_TITLE}*` (its peak also from the kernel's VmHWM). RSS counts shared "
               "library pages (torch) in every process.\n",
               "| sweep | driver before | driver peak | one trial process, peak | trial "
               "processes seen | Ray services + idle workers, peak sum |",
               "|---|---|---|---|---|---|")
    titles: set[str] = set()
    for r in results:
        m = r.memory
        if m is None:
            continue
        titles |= m.titles
        report.add(f"| {r.label} | {m.driver_before / MIB:.0f} | {m.driver_peak / MIB:.0f} | "
                   f"{m.trial_peak / MIB:.0f} | {len(m.trial_pids)} | "
                   f"{m.services_peak / MIB:.0f} |")
    report.add("", "process titles seen under the driver: "
               + ", ".join(f"`{t}`" for t in sorted(titles)), "")


# ---------------------------------------------------------------------------- budget section


def crossover(steps: list[int], fractions: list[float], target: float) -> float | None:
    """First budget where the fraction falls below target, interpolated in log(steps)."""
    pairs = list(zip(steps, fractions, strict=True))
    if pairs and pairs[0][1] < target:
        return float(pairs[0][0])
    for (s0, f0), (s1, f1) in itertools.pairwise(pairs):
        if f0 >= target > f1:
            w = (f0 - target) / (f0 - f1)
            return math.exp(math.log(s0) + w * (math.log(s1) - math.log(s0)))
    return None


def model_crossover(results: list[SweepResult], target: float, trials: int | None) -> float:
    """Budget where overhead / cost = target if the overhead per trial stays as measured at
    the largest budgets and the trainer costs its measured seconds per step.

    trials=None: steady overhead (a long sweep); else the fixed start-up/shut-down is shared by
    that many trials."""
    big = results[-1]
    per_step = big.trainer_per_trial / big.steps
    over = statistics.median(r.steady_overhead_per_trial for r in results[-2:])
    if trials:
        over += big.fixed * big.concurrency / trials
    return over * (1 - target) / target / per_step


def budget_plot(results: list[SweepResult], path: Path, cross_all: float | None,
                cross_steady: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    steps = [r.steps for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.loglog(steps, [r.cost_per_trial for r in results], "o-",
               label="cost per trial (wall x concurrency / trials)")
    ax1.loglog(steps, [r.trainer_per_trial for r in results], "s--",
               label="trainer's own time (train + eval)")
    ax1.loglog(steps, [r.overhead_per_trial for r in results], "^:",
               label="overhead per trial (all-in)")
    ax1.loglog(steps, [r.steady_overhead_per_trial for r in results], "v:",
               label="overhead per trial (excl. start-up/shut-down)")
    ax1.set(xlabel="generator steps per trial", ylabel="seconds per trial",
            title="Cost per trial")
    ax1.legend(fontsize=8)
    ax2.semilogx(steps, [1 - r.efficiency for r in results], "o-",
                 label=f"all-in ({results[0].trials}-trial sweep, start-up included)")
    ax2.semilogx(steps, [r.steady_overhead_per_trial / (r.steady_overhead_per_trial
                                                        + r.trainer_per_trial)
                         for r in results], "s--", label="excl. sweep start-up/shut-down")
    ax2.axhline(OVERHEAD_TARGET, color="grey", lw=1)
    for x, style in ((cross_all, "-"), (cross_steady, "--")):
        if x:
            ax2.axvline(x, color="tab:red", ls=style, lw=1)
            ax2.annotate(f"{x:.0f} steps", (x, 0.9), color="tab:red", fontsize=8,
                         xytext=(3, 0), textcoords="offset points")
    for ax in (ax1, ax2):  # the budgets themselves as ticks, not 10^k
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(steps, [str(s) for s in steps])
    ax2.set(xlabel="generator steps per trial", ylabel="overhead / cost", ylim=(0, 1),
            title=f"Overhead fraction (grey: {OVERHEAD_TARGET:.0%}; red: crossover)")
    ax2.legend(fontsize=8)
    fig.suptitle(f"WGAN-GP ring8, {results[0].concurrency} trials at once, "
                 f"{os.cpu_count()} CPUs", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt_cross(x: float | None, top: int) -> str:
    return f"~{x:.0f} steps" if x else f"not reached up to {top} steps"


def budget_section(report: Report, results: list[SweepResult], plot: Path) -> None:
    steps = [r.steps for r in results]
    all_in = [1 - r.efficiency for r in results]
    steady = [r.steady_overhead_per_trial / (r.steady_overhead_per_trial + r.trainer_per_trial)
              for r in results]
    cross_all = crossover(steps, all_in, OVERHEAD_TARGET)
    cross_steady = crossover(steps, steady, OVERHEAD_TARGET)
    budget_plot(results, plot, cross_all, cross_steady)
    n, c = results[0].trials, results[0].concurrency
    shown = plot.resolve().relative_to(ROOT) if plot.resolve().is_relative_to(ROOT) else plot
    report.add("## Cost per trial against the step budget\n",
               f"{n} trials per sweep, {c} at once, local Ray; cost per trial = wall x {c} / "
               f"{n}; overhead = cost - trainer; plot: `{shown}`\n",
               "| steps | wall s | trainer s/trial | cost s/trial | overhead s/trial (all-in) "
               "| overhead fraction (all-in) | overhead s/trial (excl. start-up, shut-down) | "
               "overhead fraction (excl.) |", "|---|---|---|---|---|---|---|---|")
    for r, a, s in zip(results, all_in, steady, strict=True):
        report.add(f"| {r.steps} | {r.wall:.1f} | {r.trainer_per_trial:.2f} | "
                   f"{r.cost_per_trial:.2f} | {r.overhead_per_trial:.2f} | {a:.3f} | "
                   f"{r.steady_overhead_per_trial:.2f} | {s:.3f} |")
    top = steps[-1]
    report.add("", f"Overhead below {OVERHEAD_TARGET:.0%} of a trial's cost, measured "
               f"(interpolated in log steps): {_fmt_cross(cross_all, top)} all-in for a "
               f"{n}-trial sweep; {_fmt_cross(cross_steady, top)} for trials of a long sweep "
               "(start-up and shut-down excluded).",
               f"Extrapolated from the largest budgets (overhead per trial constant, trainer "
               f"{1e3 * results[-1].trainer_per_trial / top:.1f} ms/step): "
               f"~{model_crossover(results, OVERHEAD_TARGET, None):.0f} steps in a long sweep, "
               f"~{model_crossover(results, OVERHEAD_TARGET, n):.0f} steps in a {n}-trial "
               f"sweep, ~{model_crossover(results, OVERHEAD_TARGET, 64):.0f} steps in a "
               "64-trial sweep.", "")


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6, help="trials of the sweep and scaling runs")
    ap.add_argument("--steps", type=int, default=400, help="generator steps per trial there")
    ap.add_argument("--budgets", default="25,100,400,1600,3200",
                    help="comma-separated step budgets for the cost-per-trial plot")
    ap.add_argument("--budget-trials", type=int, default=4, help="trials per budget sweep")
    ap.add_argument("--hidden", type=int, default=64, help="model width of the sweep trials")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per trial in the Seeds section")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs/img/overhead_vs_steps.png")
    ap.add_argument("--out", type=Path, help="also write the markdown report here")
    ap.add_argument("--sweep-json", help=argparse.SUPPRESS)  # internal, see cluster_sweep
    ap.add_argument("--smoke-test", action="store_true",
                    help="tiny sizes, every section (1- and 2-node cluster, plot): ~2 min")
    a = ap.parse_args(argv)
    if a.smoke_test:
        a.trials, a.steps, a.budgets, a.budget_trials, a.hidden = 2, 20, "20,60", 2, 8
        a.seeds = 2
    a.budgets = sorted({int(b) for b in str(a.budgets).split(",")})
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.sweep_json:  # the child side of cluster_sweep: one sweep, its numbers as JSON
        r = measured_sweep(**json.loads(a.sweep_json))
        print(json.dumps(dataclasses.asdict(r)), flush=True)
        return 0
    t_start = time.perf_counter()
    report = Report()
    report.add("# Cost and scale of gan-sweeper\n", machine_header(),
               load_line("at start"), "")
    trainer_section(report, a.smoke_test)
    concurrency = min(2, len(os.sched_getaffinity(0)))
    sweeps: dict[tuple[int, int], SweepResult] = {}

    def local(steps: int, trials: int) -> SweepResult:
        # The main sweep doubles as a budget point when sizes match (the smoke test's do).
        if (steps, trials) not in sweeps:
            sweeps[steps, trials] = measured_sweep(
                f"{steps} steps x {trials}", steps=steps, trials=trials, hidden=a.hidden,
                concurrency=concurrency, memory=True)
        return sweeps[steps, trials]

    sweep_section(report, local(a.steps, a.trials), a.hidden)
    seeds_section(report, steps=a.steps, trials=a.trials, hidden=a.hidden, seeds=a.seeds)
    scaling_section(report, *scaling_runs(steps=a.steps, trials=a.trials, hidden=a.hidden))
    budget = [local(s, a.budget_trials) for s in a.budgets]
    memory_section(report, list(sweeps.values()))
    budget_section(report, budget, a.plot)
    report.add(load_line("at end"),
               f"total benchmark wall time: {time.perf_counter() - t_start:.0f} s")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(report.text(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
