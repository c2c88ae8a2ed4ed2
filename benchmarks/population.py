"""Population training vs separate runs: ms per generator step and members per second.

For each network size and K, the same K members (seeds 0..K-1, WGAN-GP) are trained
  - separately: K `Trainer`s, one after another (what a sweep trial did before populations);
  - together:   one `Population` of K members (trainers/population.py);
for the same number of generator steps, after warm-up steps that are not timed, measured
side by side in one process on one torch thread. Evaluation is not timed. The ratio is
separate time / population time, the speed-up in member-steps per second.

    python benchmarks/population.py                 # the table (about 2 minutes on a CPU)
    python benchmarks/population.py --device cuda   # the same on a GPU
    python benchmarks/population.py --smoke-test
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.config import make_config  # noqa: E402
from trainers.loop import Trainer  # noqa: E402
from trainers.population import Population  # noqa: E402

# (label, TrialConfig overrides). The first is the ring8 table's networks (docs/results.md).
SIZES = [
    ("ring8 table: MLP 64x3, batch 128", {"hidden": 64, "depth": 3, "batch_size": 128}),
    ("compute-bound: MLP 128x3, batch 512", {"hidden": 128, "depth": 3, "batch_size": 512}),
]
KS = (1, 3, 10, 30)
# Below this speed-up batching does not pay on this device: the table says so.
PAYS = 1.05


def _configs(k: int, size: dict, device: str, steps: int) -> list:
    return [make_config({"loss": "wgan-gp", "dataset": "ring8", "n_critic": 4, "steps": steps,
                         "eval_every": steps, "eval_samples": 100, "device": device,
                         "seed": s, **size}) for s in range(k)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(runner, warm: int, steps: int, device: str) -> float:
    """Seconds for generator steps warm .. warm + steps of a Trainer or a Population."""
    runner.train_until(warm)
    _sync(device)
    t0 = time.perf_counter()
    runner.train_until(warm + steps)
    _sync(device)
    return time.perf_counter() - t0


def time_separate(cfgs: list, warm: int, steps: int, device: str) -> float:
    """Every member's steps, trained one after another (K Trainers)."""
    return sum(_timed(Trainer(cfg), warm, steps, device) for cfg in cfgs)


def time_population(cfgs: list, warm: int, steps: int, device: str) -> float:
    return _timed(Population(cfgs), warm, steps, device)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed generator steps")
    ap.add_argument("--warm", type=int, default=3, help="untimed warm-up steps")
    ap.add_argument("--ks", default=",".join(map(str, KS)))
    ap.add_argument("--smoke-test", action="store_true", help="K = 1, 3; 2 steps")
    args = ap.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    steps, warm = args.steps, args.warm
    if args.smoke_test:
        ks, steps, warm = [1, 3], 2, 1
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"device {args.device}, 1 torch thread; WGAN-GP on ring8, n_critic 4, seeds 0..K-1; "
          f"{steps} timed generator steps after {warm} warm-up steps; evaluation not timed\n")
    print("| networks | K | separate ms/step | population ms/step | separate members/s "
          "| population members/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for label, size in SIZES:
        for k in ks:
            cfgs = _configs(k, size, args.device, warm + steps)
            sep = time_separate(cfgs, warm, steps, args.device)
            pop = time_population(cfgs, warm, steps, args.device)
            ratio = sep / pop
            note = "" if ratio >= PAYS else " (batching does not pay here)"
            print(f"| {label} | {k} | {1e3 * sep / steps:.1f} | {1e3 * pop / steps:.1f} | "
                  f"{k * steps / sep:.0f} | {k * steps / pop:.0f} | {ratio:.2f}x{note} |",
                  flush=True)


if __name__ == "__main__":
    main()
