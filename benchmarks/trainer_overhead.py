"""What the Trainer costs on top of the math: step time, evaluation share, thread setting.

Prints, side by side and as ratios:
  (a) the Trainer's time per generator step (a population of one: trainers/population.py is
      the only training loop) against the plainest PyTorch loop, `trainers.reference`, with
      the same initial weights, batch, n_critic and random stream; the two are checked to
      agree to float round-off after two steps, so both really do the same math (target
      <= 1.10, i.e. a single run at >= 0.9x the minimal loop's speed);
  (b) one evaluation at the default schedule (every `eval_every` steps, `eval_samples` fakes)
      as a fraction of the training time between two evaluations (target <= 0.10);
  (c) that `trainers.loop.set_threads` sets torch's threads from the CPUs the process is given.

Measurements are interleaved (trainer, minimal, minimal, trainer, ...) and repeated; the table
shows medians of CPU time (process_time), which other processes on a shared machine do not
inflate, with the wall-time ratio beside it. Timing runs on `--threads` torch threads
(default 1, as on a shared machine).

    python -m benchmarks.trainer_overhead               # reference models, ~1 minute
    python -m benchmarks.trainer_overhead --smoke-test  # tiny models, a few seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

from sweeper.bars import iterate
from trainers.config import TrialConfig, make_config
from trainers.loop import Trainer, set_threads
from trainers.reference import ReferenceRun

TARGET_STEP_RATIO = 1.10
TARGET_EVAL_FRACTION = 0.10


def _max_difference(trainer: Trainer, minimal: ReferenceRun) -> float:
    """Largest |weight difference| between the trainer's member and the reference run."""
    ours = [*trainer.G.member_state_dict(0).values(), *trainer.D.member_state_dict(0).values()]
    ref = [*minimal.G.state_dict().values(), *minimal.D.state_dict().values()]
    return max((a.float() - b.float()).abs().max().item() for a, b in zip(ours, ref,
                                                                          strict=True))


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) spent in fn().

    CPU time is the headline: on a shared machine other processes stretch wall time at
    random, but they do not add to this process's CPU time.
    """
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def measure(cfg: TrialConfig, steps: int, repeats: int) -> dict[str, float]:
    """Median CPU seconds per generator step (Trainer, minimal loop) and per evaluation."""
    trainer = Trainer(cfg)
    minimal = ReferenceRun(cfg, trainer.data)
    trainer.train_until(2)  # warm-up (allocator, autograd caches) for both
    minimal.run(2)
    # The same math: after the same two steps from the same seed the weights agree to float
    # round-off (stacked and plain matmuls add up in different orders, so not bit for bit;
    # GAN training is chaotic, so the gap then grows and is not compared later).
    difference = _max_difference(trainer, minimal)
    cpu: dict[str, list[float]] = {"trainer": [], "minimal": [], "eval": []}
    wall: dict[str, list[float]] = {"trainer": [], "minimal": [], "eval": []}
    runs = {"trainer": lambda: trainer.train_until(trainer.step + steps),
            "minimal": lambda: minimal.run(steps)}
    for r in range(repeats):
        order = ("trainer", "minimal") if r % 2 == 0 else ("minimal", "trainer")  # ABBA
        for name in order:
            c, w = _timed(runs[name])
            cpu[name].append(c / steps)
            wall[name].append(w / steps)
        c, w = _timed(trainer.evaluate)
        cpu["eval"].append(c)
        wall["eval"].append(w)
    ratios = [a / b for a, b in zip(cpu["trainer"], cpu["minimal"], strict=True)]
    wall_ratios = [a / b for a, b in zip(wall["trainer"], wall["minimal"], strict=True)]
    step = statistics.median(cpu["trainer"])
    return {
        "trainer_step": step,
        "minimal_step": statistics.median(cpu["minimal"]),
        "ratio": statistics.median(ratios),
        "ratio_lo": min(ratios),
        "ratio_hi": max(ratios),
        "wall_ratio": statistics.median(wall_ratios),
        "eval": statistics.median(cpu["eval"]),
        "eval_fraction": statistics.median(cpu["eval"]) / (cfg.eval_every * step),
        "difference": difference,
    }


def bench_overrides(dataset: str = "ring8", smoke_test: bool = False) -> dict[str, object]:
    """TrialConfig overrides of this benchmark: reference models, or tiny ones for a smoke test."""
    overrides: dict[str, object] = {"dataset": dataset, "device": "cpu", "seed": 0}
    if smoke_test:
        overrides.update(hidden=32, batch_size=64, eval_samples=500)
    return overrides


def measure_loss(loss: str, *, dataset: str = "ring8", smoke_test: bool = False, steps: int = 0,
                 repeats: int = 15) -> tuple[TrialConfig, dict[str, float]]:
    """(config, measure(...)) for one loss at this benchmark's sizes; callable from others."""
    cfg = make_config({**bench_overrides(dataset, smoke_test), "loss": loss})
    # ~0.5 s per measurement at the reference size (wgan-gp ~47 ms/step, bce-ns ~9)
    steps = steps or (3 if smoke_test else 50 // cfg.n_critic)
    return cfg, measure(cfg, steps, repeats)


def thread_check() -> list[str]:
    """set_threads() with this process's CPUs, then with the process pinned to one CPU."""
    cpus = os.sched_getaffinity(0)
    lines = []
    n = set_threads()
    lines.append(f"this process may run on {len(cpus)} CPU(s) {sorted(cpus)}: set_threads() -> "
                 f"{n} (torch.get_num_threads() = {torch.get_num_threads()}) "
                 f"{'OK' if n == len(cpus) == torch.get_num_threads() else 'MISMATCH'}")
    one = min(cpus)
    os.sched_setaffinity(0, {one})  # what a scheduler granting one CPU does (taskset, Ray)
    try:
        n = set_threads()
    finally:
        os.sched_setaffinity(0, cpus)
    lines.append(f"pinned to CPU {one} only: set_threads() -> {n} "
                 f"{'OK' if n == 1 == torch.get_num_threads() else 'MISMATCH'}")
    lines.append(f"set_threads(3) -> {set_threads(3)} (an explicit grant, e.g. Ray's, wins)")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke-test", action="store_true", help="tiny models and few repeats")
    p.add_argument("--losses", default="wgan-gp,bce-ns", help="comma-separated: wgan-gp,bce-ns")
    p.add_argument("--repeats", type=int, default=15, help="interleaved measurements per loss")
    p.add_argument("--steps", type=int, default=0,
                   help="generator steps per measurement (default: ~0.5 s worth per loss)")
    p.add_argument("--threads", type=int, default=1, help="torch threads while timing")
    p.add_argument("--dataset", default="ring8")
    args = p.parse_args(argv)

    print("## Trainer overhead\n")
    print("### (c) threads")
    for line in thread_check():
        print(f"- {line}")
    torch.set_num_threads(args.threads)

    repeats = 2 if args.smoke_test else args.repeats
    base = make_config(bench_overrides(args.dataset, args.smoke_test))
    print(f"\nprotocol: dataset {args.dataset}, hidden {base.hidden}, depth {base.depth}, "
          f"batch {base.batch_size}, z_dim {base.z_dim}, reference defaults per loss, "
          f"eval every {base.eval_every} steps on {base.eval_samples} samples, "
          f"{args.threads} torch thread(s), CPU-time medians of {repeats} interleaved "
          "repeats\n")
    print("| loss | n_critic | Trainer CPU ms/step | minimal CPU ms/step | (a) ratio [min, max] "
          f"(target <= {TARGET_STEP_RATIO:.2f}) | wall-time ratio | max weight difference "
          "after 2 steps | eval CPU ms | "
          f"(b) eval / train (target <= {TARGET_EVAL_FRACTION:.2f}) |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst = {"ratio": 0.0, "eval_fraction": 0.0}
    # On stderr, and moved only between measurements, never inside a timed one.
    for loss in iterate(args.losses.split(","), "trainer_overhead", "losses"):
        cfg, m = measure_loss(loss, dataset=args.dataset, smoke_test=args.smoke_test,
                              steps=args.steps, repeats=repeats)
        worst = {k: max(v, m[k]) for k, v in worst.items()}
        print(f"| {loss} | {cfg.n_critic} | {1e3 * m['trainer_step']:.2f} | "
              f"{1e3 * m['minimal_step']:.2f} | {m['ratio']:.3f} [{m['ratio_lo']:.3f}, "
              f"{m['ratio_hi']:.3f}] | {m['wall_ratio']:.3f} | "
              f"{m['difference']:.1e} | "
              f"{1e3 * m['eval']:.1f} | {m['eval_fraction']:.4f} |")
    print(f"\nworst step ratio {worst['ratio']:.3f} "
          f"({'within' if worst['ratio'] <= TARGET_STEP_RATIO else 'ABOVE'} target), "
          f"worst eval fraction {worst['eval_fraction']:.4f} "
          f"({'within' if worst['eval_fraction'] <= TARGET_EVAL_FRACTION else 'ABOVE'} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
