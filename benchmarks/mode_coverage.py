"""Mode coverage of each loss on the 2D mixtures, PacGAN-style, over several seeds.

Every (loss, dataset, seed) is trained with `make_config`'s reference defaults for the loss
(optimiser, learning rates, n_critic, lambda/clip) for `--steps` generator steps, then scored
on 2,500 generated samples. One markdown table per dataset, with the protocol above it:

    loss | modes captured | HQ % | reverse KL | FID (N=2500) | diverged or collapsed

Values are mean +- standard error over seeds. A seed "collapsed" when it captures fewer than
COVERAGE_THRESHOLD * K modes (trainers/names.py). Rows are the `--losses` given; add a loss to
the trainer and it can be listed here unchanged.

    python benchmarks/mode_coverage.py --losses bce-ns,wgan-clip,wgan-gp --seeds 3 --steps 1000
    python benchmarks/mode_coverage.py --smoke-test
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import names  # noqa: E402
from trainers.config import ConfigError, TrialConfig, make_config  # noqa: E402
from trainers.loop import set_threads, train  # noqa: E402

EVAL_SAMPLES = 2500  # PacGAN protocol


@dataclass(frozen=True)
class Run:
    config: TrialConfig
    metrics: dict[str, float]
    seconds: float

    @property
    def failed(self) -> bool:
        """Diverged, or collapsed (fewer than COVERAGE_THRESHOLD of the modes captured)."""
        m = self.metrics
        return bool(m[names.DIVERGED]) or (
            m[names.MODES_COVERED] < names.COVERAGE_THRESHOLD * m[names.NUM_MODES])


def run_one(loss: str, dataset: str, seed: int, steps: int,
            overrides: dict[str, object]) -> Run:
    cfg = make_config({**overrides, "loss": loss, "dataset": dataset, "seed": seed,
                       "steps": steps, "eval_every": steps, "eval_samples": EVAL_SAMPLES,
                       "device": "cpu"})
    t0 = time.perf_counter()
    metrics = train(cfg)
    return Run(cfg, metrics, time.perf_counter() - t0)


def mean_se(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """'mean ± s.e.' over seeds ('mean' alone for one seed, '–' for none)."""
    if not values:
        return "–"
    m = statistics.fmean(values)
    if len(values) == 1:
        return fmt.format(m)
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{fmt.format(m)} ± {fmt.format(se)}"


def dataset_table(dataset: str, runs: list[Run], losses: Sequence[str]) -> str:
    k = int(runs[0].metrics[names.NUM_MODES])
    lines = [f"### {dataset} (K = {k} modes; collapsed = fewer than "
             f"{math.ceil(names.COVERAGE_THRESHOLD * k)} captured)", "",
             f"| loss | modes captured (of {k}) | HQ % | reverse KL | FID (N={EVAL_SAMPLES}) "
             "| diverged or collapsed | s / run |",
             "|---|---|---|---|---|---|---|"]
    for loss in losses:
        rs = [r for r in runs if r.config.loss == loss]
        ms = [r.metrics for r in rs]
        fids = [m[names.FID] for m in ms if names.FID in m]  # absent for diverged runs
        fid = mean_se(fids, "{:.3g}")
        if len(fids) < len(ms):
            fid += f" ({len(fids)} of {len(ms)} runs)"
        lines.append(
            f"| {loss} | {mean_se([m[names.MODES_COVERED] for m in ms])} "
            f"| {mean_se([100 * m[names.HQ_FRACTION] for m in ms], '{:.1f}')} "
            f"| {mean_se([m[names.MODE_KL] for m in ms], '{:.3f}')} | {fid} "
            f"| {sum(r.failed for r in rs)}/{len(rs)} "
            f"| {statistics.fmean(r.seconds for r in rs):.1f} |")
    return "\n".join(lines)


def protocol(losses: Sequence[str], seeds: Sequence[int], steps: int,
             overrides: dict[str, object], threads: int) -> str:
    base = make_config({**overrides, "eval_samples": EVAL_SAMPLES})
    lines = [f"protocol: {steps} generator steps, batch {base.batch_size}, MLP hidden "
             f"{base.hidden}, depth {base.depth}, z_dim {base.z_dim}, eval N = "
             f"{EVAL_SAMPLES} generated samples (FID against {EVAL_SAMPLES} real), "
             f"seeds {', '.join(map(str, seeds))} (mean ± s.e. over {len(seeds)}), "
             f"{threads} torch thread(s), CPU", "", "reference defaults per loss (make_config):"]
    for loss in losses:
        c = make_config({**overrides, "loss": loss})
        extra = {"wgan-gp": f", lambda {c.gp_lambda:g}", "wgan-clip": f", clip {c.clip_value:g}"}
        betas = f", betas ({c.beta1:g}, {c.beta2:g})" if c.optimizer == "adam" else ""
        lines.append(f"- {loss}: {c.optimizer} lr_g {c.lr_g:g}, lr_d {c.lr_d:g}{betas}, "
                     f"n_critic {c.n_critic}{extra.get(loss, '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke-test", action="store_true",
                   help="tiny networks, 1 seed, 10 steps: checks the script, not the losses")
    p.add_argument("--losses", default="bce-ns,wgan-clip,wgan-gp", help="comma-separated")
    p.add_argument("--datasets", default="ring8,grid25", help="comma-separated")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per (loss, dataset)")
    p.add_argument("--steps", type=int, default=1000, help="generator steps per run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared box)")
    p.add_argument("--out", type=Path, help="also write the markdown to this file")
    args = p.parse_args(argv)

    losses = args.losses.split(",")
    datasets = args.datasets.split(",")
    overrides: dict[str, object] = {}
    seeds, steps = list(range(args.seeds)), args.steps
    if args.smoke_test:
        overrides = {"hidden": 32, "batch_size": 64}
        seeds, steps = [0], 10
    try:  # fail fast on a typo, before any training
        for loss in losses:
            make_config({"loss": loss})
        for dataset in datasets:
            make_config({"dataset": dataset})
    except ConfigError as e:
        p.error(str(e))
    threads = set_threads(args.threads)

    t0, cpu0 = time.perf_counter(), time.process_time()
    sections = [protocol(losses, seeds, steps, overrides, threads)]
    for dataset in datasets:
        runs = []
        for loss in losses:
            for seed in seeds:
                run = run_one(loss, dataset, seed, steps, overrides)
                runs.append(run)
                print(f"  {dataset} {loss} seed {seed}: {run.metrics[names.MODES_COVERED]:.0f}"
                      f" modes, {run.seconds:.1f} s", file=sys.stderr, flush=True)
        sections.append(dataset_table(dataset, runs, losses))
    sections.append(f"total wall time: {time.perf_counter() - t0:.0f} s, CPU time "
                    f"{time.process_time() - cpu0:.0f} s "
                    f"({len(datasets) * len(losses) * len(seeds)} runs)")
    text = "## Mode coverage on 2D mixtures\n\n" + "\n\n".join(sections) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
