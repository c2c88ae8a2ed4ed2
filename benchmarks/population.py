"""Population training: ops per step by K, the speed-up over separate runs, and which stack.

Three tables, each measured side by side in one process on one torch thread (CPU time on a
CPU, wall time on a GPU), WGAN-GP at its reference defaults but n_critic 4, seeds 0..K-1,
training steps only (evaluation is not timed):

  --ops      (issue 36) for K = 1, 10, 100, 1,000: top-level torch ops per generator step
             (profiler; one op is about one kernel launch on a GPU), ms per step, ms per
             member-step and members/s of one population. Goal: the ops at K = 1,000 are at
             most 1.2x those at K = 1.
  --speedup  K single runs one after another (what `--separate-seeds` does) against one
             population of K, alternating (ABBA) medians. Goals: ring8 K = 10 >= 3x, the
             user model (examples/resmlp.py) >= 2.5x.
  --stacks   the registered models' hand-written stacks (trainers/batched.py StackedMLP,
             trainers/stacked_conv.py) against the generic torch.func population
             (trainers/stacked.py) that every other model gets: a hand-written stack is kept
             only where this shows it faster.
  --scan     (for GPUs) double K up to 1,024 while a population step costs <= 1.25x a single
             member's step: the largest such K and its members/s.

    python -m benchmarks.population                  # all three tables (~15 min on a CPU)
    python -m benchmarks.population --ops            # one table
    python -m benchmarks.population --device cuda --scan
    python -m benchmarks.population --smoke-test
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from benchmarks._common import machine_header, ops_per_step
from sweeper.bars import Progress
from trainers.config import make_config
from trainers.loop import Trainer
from trainers.population import Population

RESMLP = str(Path(__file__).resolve().parents[1] / "examples" / "resmlp.py") + ":build"
# (label, TrialConfig overrides). The first is the ring8 table's networks (docs/results.md).
SIZES = [
    ("ring8 table: MLP 64x3, batch 128",
     {"dataset": "ring8", "hidden": 64, "depth": 3, "batch_size": 128}),
    ("digits space: conv h32, batch 64", {"dataset": "digits", "hidden": 32, "batch_size": 64}),
    ("user model: residual MLP + LayerNorm 64x3, batch 128",
     {"dataset": "ring8", "hidden": 64, "depth": 3, "batch_size": 128, "model": RESMLP}),
    ("compute-bound: MLP 128x3, batch 512",
     {"dataset": "ring8", "hidden": 128, "depth": 3, "batch_size": 512}),
]
OPS_KS = (1, 10, 100, 1000)
SPEEDUP_KS = (1, 3, 10, 30)
STACK_KS = (1, 10, 30)
OPS_GOAL = 1.2
# --scan: K doubles up to this while the population's step takes <= 1.25x a single run's.
SCAN_MAX_K = 1024
SCAN_SLACK = 1.25
# Below this speed-up batching does not pay on this device: the table says so.
PAYS = 1.05


def _configs(k: int, size: dict, device: str) -> list:
    return [make_config({"loss": "wgan-gp", "n_critic": 4, "steps": 10**6,
                         "eval_every": 10**6, "eval_samples": 100, "device": device,
                         "seed": s, **size}) for s in range(k)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _clock(device: str) -> float:
    # CPU time on a CPU: other processes on a shared machine do not inflate it. Wall time
    # on a GPU, where the work is not this process's CPU time.
    return time.perf_counter() if device.startswith("cuda") else time.process_time()


def _advance(runners: list, steps: int, device: str) -> float:
    """Seconds for `steps` more generator steps of each runner, one after another."""
    _sync(device)
    t0 = _clock(device)
    for r in runners:
        r.train_until(r.step + steps)
    _sync(device)
    return _clock(device) - t0


def _abba(arms: list[list], warm: int, steps: int, repeats: int, device: str) -> list[float]:
    """Median seconds for `steps` steps of each arm, measured in turn after warm-up."""
    for runners in arms:
        _advance(runners, warm, device)
    times: list[list[float]] = [[] for _ in arms]
    for r in range(repeats):
        order = range(len(arms)) if r % 2 == 0 else reversed(range(len(arms)))  # ABBA
        for i in order:
            times[i].append(_advance(arms[i], steps, device))
    return [statistics.median(t) for t in times]


# ---------------------------------------------------------------------------- tables
def ops_table(sizes: list, ks: list[int], warm: int, steps: int, device: str) -> None:
    print("| networks | K | ops per generator step | ops / ops at K=1 | ms per step | "
          "ms per member-step | members/s |")
    print("|---|---|---|---|---|---|---|")
    for label, size in sizes:
        base = None
        for k in ks:
            pop = Population(_configs(k, size, device))
            pop.train_until(warm if k < 100 else 1)  # a K = 1,000 conv step takes ~90 s
            ops, _ = ops_per_step(pop, steps=1)
            base = base or ops
            # Fewer timed steps for large K: the point is the ops, and K = 1,000 conv
            # members take seconds per step on one CPU thread.
            n = max(1, steps // max(1, k // 10))
            t = _advance([pop], n, device) / n
            print(f"| {label} | {k} | {ops:.0f} | {ops / base:.2f} | {1e3 * t:.1f} | "
                  f"{1e3 * t / k:.2f} | {k / t:.0f} |", flush=True)
            del pop
    print(f"\nGoal: ops at K = 1,000 at most {OPS_GOAL}x the ops at K = 1.\n")


def speedup_table(sizes: list, ks: list[int], warm: int, steps: int, repeats: int,
                  device: str) -> None:
    print("| networks | K | separate ms/step | population ms/step | separate members/s "
          "| population members/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    # The bar is on stderr and moves only between measurements, never inside a timed one.
    bar = Progress(len(sizes) * len(ks), "population", "rows")
    for label, size in sizes:
        for k in ks:
            cfgs = _configs(k, size, device)
            sep, pop = _abba([[Trainer(c) for c in cfgs], [Population(cfgs)]], warm, steps,
                             repeats, device)
            ratio = sep / pop
            note = ""
            if k == 1:
                note = " (the same loop: a single run is a population of one)"
            elif ratio < PAYS:
                note = " (batching does not pay here)"
            print(f"| {label} | {k} | {1e3 * sep / steps:.1f} | {1e3 * pop / steps:.1f} | "
                  f"{k * steps / sep:.0f} | {k * steps / pop:.0f} | {ratio:.2f}x{note} |",
                  flush=True)
            bar.update_to(bar.n + 1)
    bar.close()
    print("\nGoals: ring8 K = 10 >= 3x; the user model K = 10 >= 2.5x.\n")


def stacks_table(sizes: list, ks: list[int], warm: int, steps: int, repeats: int,
                 device: str) -> None:
    print("| networks | K | hand-written ms/step | torch.func ms/step | hand-written / "
          "torch.func speed |")
    print("|---|---|---|---|---|")
    for label, size in sizes:
        for k in ks:
            cfgs = _configs(k, size, device)
            hand, func = _abba([[Population(cfgs)], [Population(cfgs, stacking="generic")]],
                               warm, steps, repeats, device)
            print(f"| {label} | {k} | {1e3 * hand / steps:.1f} | {1e3 * func / steps:.1f} | "
                  f"{func / hand:.2f}x |", flush=True)
    print()


def scan(label: str, size: dict, device: str, warm: int, steps: int) -> None:
    """The largest K whose population step costs <= SCAN_SLACK x one single run's step."""
    one = Population(_configs(1, size, device))
    _advance([one], warm, device)
    solo = _advance([one], steps, device) / steps
    best, k = (1, solo), 1
    while k <= SCAN_MAX_K:
        pop = Population(_configs(k, size, device))
        _advance([pop], warm, device)
        t = _advance([pop], steps, device) / steps
        ops, _ = ops_per_step(pop, steps=1)
        print(f"| {label} | {k} | {ops:.0f} | {1e3 * solo:.2f} | {1e3 * t:.2f} | {k / t:.0f} | "
              f"{t / solo:.2f} |", flush=True)
        del pop
        if t > SCAN_SLACK * solo:
            break
        best = (k, t)
        k *= 2
    print(f"\n{label}: largest K with a population step <= {SCAN_SLACK}x a single run's "
          f"step: K = {best[0]} ({best[0] / best[1]:.0f} members/s)\n", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed generator steps")
    ap.add_argument("--warm", type=int, default=3, help="untimed warm-up steps")
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternating measurements per row (medians are reported)")
    for flag in ("ops", "speedup", "stacks", "scan"):
        ap.add_argument(f"--{flag}", action="store_true", help="this table only (see above)")
    ap.add_argument("--ks", default=None, help="comma-separated K (default: per table)")
    ap.add_argument("--sizes", default="all", help="comma-separated indexes into SIZES "
                    "(0 ring8 MLP, 1 digits conv, 2 user residual MLP, 3 compute-bound MLP)")
    ap.add_argument("--smoke-test", action="store_true", help="tiny K, 2 steps, every table")
    args = ap.parse_args(argv)
    sizes = SIZES if args.sizes == "all" else [SIZES[int(i)] for i in args.sizes.split(",")]
    given = [int(k) for k in args.ks.split(",")] if args.ks else None
    steps, warm, repeats = args.steps, args.warm, args.repeats
    ops_ks, speed_ks, stack_ks = (given or OPS_KS), (given or SPEEDUP_KS), (given or STACK_KS)
    if args.smoke_test:
        ops_ks, speed_ks, stack_ks = [1, 3], [1, 3], [1, 3]
        steps, warm, repeats = 2, 1, 1
    chosen = [f for f in ("ops", "speedup", "stacks", "scan") if getattr(args, f)]
    tables = chosen or ["ops", "speedup", "stacks"]
    torch.set_num_threads(1)
    print(machine_header(f"device {args.device}, 1 torch thread"))
    clock = "wall" if args.device.startswith("cuda") else "CPU"
    print(f"WGAN-GP, n_critic 4, seeds 0..K-1; {clock} time of {steps} generator steps after "
          f"{warm} warm-up steps; evaluation not timed\n")
    if "scan" in tables:
        print("| networks | K | ops per step | single run ms/step | population ms/step | "
              "population members/s | population / single |")
        print("|---|---|---|---|---|---|---|")
        for label, size in sizes:
            scan(label, size, args.device, warm, steps)
    if "ops" in tables:
        ops_table(sizes, ops_ks, warm, steps, args.device)
    if "speedup" in tables:
        print(f"Population vs separate runs: medians of {repeats} alternating measurements\n")
        speedup_table(sizes, speed_ks, warm, steps, repeats, args.device)
    if "stacks" in tables:
        print(f"Hand-written stacks vs torch.func: medians of {repeats} alternating "
              "measurements\n")
        stacks_table([s for s in sizes if "model" not in s[1]], stack_ks, warm, steps,
                     repeats, args.device)


if __name__ == "__main__":
    main()
