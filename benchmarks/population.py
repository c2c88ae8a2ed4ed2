"""Population training vs separate runs: ms per generator step and members per second.

For each network size and K, the same K members (seeds 0..K-1, WGAN-GP) are trained
  - separately: K single runs (`Trainer`, a population of one), one after another (what a
    sweep trial did before populations, and what `sweeper run --separate-seeds` does);
  - together:   one `Population` of K members (trainers/population.py);
for the same number of generator steps, after warm-up steps that are not timed, measured
alternately (ABBA) in one process on one torch thread; the table shows medians of CPU time
(wall time on a GPU). Evaluation is not timed. The ratio is separate time / population
time, the speed-up in member-steps per second. The last column is what `make_members` (every
caller's entry point) does at that size: one population, or where batching stops paying on
a CPU, populations of at most `cpu_chunk` members in turn, timed with the others.

    python -m benchmarks.population                 # the table (about 10 minutes on a CPU)
    python -m benchmarks.population --device cuda   # the same on a GPU
    python -m benchmarks.population --device cuda --scan   # the largest K at ~solo speed
    python -m benchmarks.population --smoke-test
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks._common import machine_header
from sweeper.bars import Progress
from trainers.config import make_config
from trainers.loop import Trainer
from trainers.population import Population

# (label, TrialConfig overrides). The first is the ring8 table's networks (docs/results.md).
SIZES = [
    ("ring8 table: MLP 64x3, batch 128",
     {"dataset": "ring8", "hidden": 64, "depth": 3, "batch_size": 128}),
    ("digits space: conv h32, batch 64", {"dataset": "digits", "hidden": 32, "batch_size": 64}),
    ("compute-bound: MLP 128x3, batch 512",
     {"dataset": "ring8", "hidden": 128, "depth": 3, "batch_size": 512}),
]
# --scan: K doubles up to this; a member of a population of K runs at >= 80% of its solo
# speed while the population's step takes <= 1.25x a single run's step.
SCAN_MAX_K = 1024
SCAN_SLACK = 1.25
KS = (1, 3, 10, 30)
# Below this speed-up batching does not pay on this device: the table says so.
PAYS = 1.05


def _configs(k: int, size: dict, device: str, steps: int) -> list:
    return [make_config({"loss": "wgan-gp", "n_critic": 4, "steps": steps,
                         "eval_every": steps, "eval_samples": 100, "device": device,
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


def measure(cfgs: list, warm: int, steps: int, repeats: int,
            device: str) -> tuple[float, float]:
    """Median seconds for `steps` generator steps of every member: (K single runs one after
    another, one population of K), measured in turn `repeats` times after warm-up."""
    arms = [[Trainer(c) for c in cfgs], [Population(cfgs)]]
    for runners in arms:
        _advance(runners, warm, device)
    times: list[list[float]] = [[] for _ in arms]
    for r in range(repeats):
        order = range(len(arms)) if r % 2 == 0 else reversed(range(len(arms)))  # ABBA
        for i in order:
            times[i].append(_advance(arms[i], steps, device))
    return statistics.median(times[0]), statistics.median(times[1])


def time_separate(cfgs: list, warm: int, steps: int, device: str) -> float:
    """Every member's steps, trained one after another (K single runs)."""
    runners = [Trainer(c) for c in cfgs]
    _advance(runners, warm, device)
    return _advance(runners, steps, device)


def time_population(cfgs: list, warm: int, steps: int, device: str) -> float:
    pop = [Population(cfgs)]
    _advance(pop, warm, device)
    return _advance(pop, steps, device)


def scan(label: str, size: dict, device: str, warm: int, steps: int) -> None:
    """The largest K whose population step costs <= SCAN_SLACK x one single run's step."""
    solo = time_separate(_configs(1, size, device, 10**6), warm, steps, device) / steps
    best, k = (1, solo), 1
    while k <= SCAN_MAX_K:
        t = time_population(_configs(k, size, device, 10**6), warm, steps, device) / steps
        print(f"| {label} | {k} | {1e3 * solo:.2f} | {1e3 * t:.2f} | {k / t:.0f} | "
              f"{t / solo:.2f} |", flush=True)
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
    ap.add_argument("--ks", default=",".join(map(str, KS)))
    ap.add_argument("--scan", action="store_true", help=f"double K up to {SCAN_MAX_K} while "
                    f"a population step costs <= {SCAN_SLACK}x a single run's (for GPUs)")
    ap.add_argument("--sizes", default="all", help="comma-separated indexes into SIZES "
                    "(0 ring8 MLP, 1 digits conv, 2 compute-bound MLP)")
    ap.add_argument("--smoke-test", action="store_true", help="K = 1, 3; 2 steps")
    args = ap.parse_args(argv)
    sizes = SIZES if args.sizes == "all" else [SIZES[int(i)] for i in args.sizes.split(",")]
    ks = [int(k) for k in args.ks.split(",")]
    steps, warm = args.steps, args.warm
    if args.smoke_test:
        ks, steps, warm, args.repeats = [1, 3], 2, 1, 1
    torch.set_num_threads(1)
    print(machine_header(f"device {args.device}, 1 torch thread"))
    print(f"WGAN-GP, n_critic 4, seeds 0..K-1; "
          f"medians of {args.repeats} alternating measurements of {steps} generator steps "
          f"({'wall' if args.device.startswith('cuda') else 'CPU'} time) after {warm} warm-up "
          "steps; evaluation not timed\n")
    if args.scan:
        print("| networks | K | single run ms/step | population ms/step | population "
              "members/s | population / single |")
        print("|---|---|---|---|---|---|")
        for label, size in sizes:
            scan(label, size, args.device, warm, steps)
        return
    print("| networks | K | separate ms/step | population ms/step | separate members/s "
          "| population members/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    # The bar is on stderr and moves only between measurements, never inside a timed one.
    bar = Progress(len(sizes) * len(ks), "population", "rows")
    for label, size in sizes:
        for k in ks:
            cfgs = _configs(k, size, args.device, 10**6)
            sep, pop = measure(cfgs, warm, steps, args.repeats, args.device)
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


if __name__ == "__main__":
    main()
