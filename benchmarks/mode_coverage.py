"""Mode coverage of each loss on PacGAN's data, metrics and N, with the published rows beside.

Rows are (a) each loss in `--losses` at its reference defaults (`make_config`: optimiser,
learning rates, n_critic, lambda/clip, each citing its paper) and (b) every `--recommended`
file: a setting exported by `sweeper stable --export`. Every row trains under one protocol
(`--protocol`, benchmarks/protocols.py: `short` is ours, 3,000 steps of 3x64 ReLU MLPs;
`gdpp` is the budget of GDPP's WGAN-GP row, 25,000 steps, batch 512, 2x128 tanh MLPs): the
same steps, networks, batch and evaluation N, over seeds S .. S+N-1 (`--seed-start`, `--seeds`);
from a recommended file only the loss's hyperparameters are taken (loss, optimiser, learning
rates, schedule, betas, n_critic, lambda, clip), never the budget or the networks, so no row
gets more compute than another.

    loss | modes captured | modes held | HQ % | score | reverse KL | FID | diverged | failed
        | succeeded [Wilson 95%]

Values are mean +- standard error over seeds. A seed "failed" when it diverged or did not pass
the sweeper's own success rule (trainers/quality.py: enough modes held, each with a real share
of the HQ samples, and an HQ fraction near the real data's); "score" is its seed_score. The quoted
rows (VEEGAN, GDPP, PacGAN papers) are printed in a separate, labelled table: they were not
run here and their networks and budgets differ from ours.

    python -m benchmarks.mode_coverage --seeds 10 --workers 2 \\
        --recommended exports/ring8-wgan-gp.yaml --out docs/coverage.md
    python -m benchmarks.mode_coverage --protocol gdpp --losses wgan-gp --datasets ring8 \\
        --cache cache/coverage     # 10 seeds x 25k steps: hours on a CPU; resumable
    python -m benchmarks.mode_coverage --seed-start 100 --seeds 30 --losses '' \\
        --recommended benchmarks/recommended/ring8-wgan-gp-quality.yaml   # fresh seeds
    python -m benchmarks.mode_coverage --datasets stacked-digits --losses bce-ns,wgan-gp \\
        --steps 500 --hidden 32 --batch-size 64 --eval-samples 26000
    python -m benchmarks.mode_coverage --smoke-test

A row's seeds on one dataset train as one batched population (trainers/population.py), which
trains each seed as its own run would (within float round-off) at a fraction of the cost.

With --cache DIR each run's result is kept, so an interrupted table resumes, and a table can
grow: run the reference rows while the sweeps run, then rerun with --recommended added. Each
result records a hash of trainers/; results from other trainer code are still reused, but the
table's last line counts them, and --retrain-stale trains them again. A population still
training also saves its exact state into the cache every --checkpoint-every steps, so a long
row (the gdpp protocol on a CPU) spreads over several invocations without losing work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trainers
from benchmarks import protocols
from benchmarks._common import mean_se
from sweeper.analyse.stability import wilson_interval
from sweeper.bars import Progress
from trainers import names
from trainers.config import ConfigError, load_config_file, make_config
from trainers.data import build_dataset
from trainers.loop import set_threads
from trainers.members import load_members_file, make_members
from trainers.population import evaluations
from trainers.quality import DEFAULT_RULE
from trainers.runtime import resolve_device

# What a recommended setting contributes; everything else is the table's protocol.
HYPERPARAMETERS = ("loss", "optimizer", "lr_g", "lr_d", "lr_schedule", "beta1", "beta2",
                   "n_critic", "gp_lambda", "clip_value")

# Quoted, not run here (shared notes: protocols.md). Columns: modes, HQ %, KL per dataset.
PUBLISHED = {
    "ring8": [("GAN (VEEGAN tab. 1)", "1", "99.3", "–"),
              ("Unrolled GAN (VEEGAN tab. 1)", "7.6", "35.6", "–"),
              ("VEEGAN (VEEGAN tab. 1)", "8", "52.9", "–"),
              ("WGAN-GP (GDPP tab. 1)", "6.8", "59.6", "–"),
              ("GAN (PacGAN tab. 1)", "6.3 ± 0.5", "98.2 ± 0.2", "0.45 ± 0.09"),
              ("PacGAN4 (PacGAN tab. 1)", "7.8 ± 0.1", "95.9 ± 1.4", "0.07 ± 0.02")],
    "grid25": [("GAN (VEEGAN tab. 1)", "3.3", "0.5", "–"),
               ("Unrolled GAN (VEEGAN tab. 1)", "23.6", "16", "–"),
               ("VEEGAN (VEEGAN tab. 1)", "24.6", "40", "–"),
               ("WGAN-GP (GDPP tab. 1)", "24.2", "28.7", "–"),
               ("GAN (PacGAN tab. 1)", "17.3 ± 0.8", "94.8 ± 0.7", "0.70 ± 0.07"),
               ("PacGAN4 (PacGAN tab. 1)", "24.8 ± 0.2", "93.6 ± 0.6", "0.04 ± 0.01")],
}
PUBLISHED_NOTE = {
    "ring8": "ring of 8, radius 1, sigma 0.01",
    "grid25": "5 x 5 grid, spacing 2, sigma 0.05",
}
# The goals set for the sweep-recommended WGAN-GP: every mode held, and mean HQ at least this
# (ring8: issue 13, grid25: issue 15).
TARGET_HQ = {"ring8": 0.90, "grid25": 0.80}


@dataclass(frozen=True)
class Row:
    """One table row: a label and the hyperparameters it trains with."""

    label: str
    dataset: str | None  # None: every dataset; a recommended setting belongs to one
    values: dict[str, Any]
    recommended: bool = False


@dataclass(frozen=True)
class Run:
    row: str
    seed: int
    metrics: dict[str, float]
    cpu_seconds: float

    @property
    def diverged(self) -> bool:
        return bool(self.metrics[names.DIVERGED])

    @property
    def held(self) -> float:
        """Modes held (captured, for a result cached before holding was measured)."""
        return self.metrics.get(names.MODES_HELD, self.metrics[names.MODES_COVERED])

    @property
    def failed(self) -> bool | None:
        """Diverged or not a success under the quality rule; None for a result cached by a
        trainer that did not judge it (before the rule existed: retrain it)."""
        if names.SEED_SUCCESS not in self.metrics:
            return None
        return self.diverged or self.metrics[names.SEED_SUCCESS] < 1


def recommended_row(path: Path, *, everywhere: bool = False) -> Row:
    """A row from a `sweeper stable --export` file: its loss hyperparameters, on the dataset
    it was tuned on (or, with `everywhere`, on every dataset of the table)."""
    values = load_config_file(path)
    make_config(values, fill_loss_defaults=False)  # validates, names the bad key if any
    loss, dataset = values.get("loss", "wgan-gp"), values.get("dataset", "ring8")
    label = f"{loss}, sweep-recommended ({path.stem})"
    if everywhere:
        label = f"{loss}, sweep-recommended on {dataset} ({path.stem})"
    return Row(label, None if everywhere else dataset,
               {k: values[k] for k in HYPERPARAMETERS if k in values}, recommended=True)


def train_seeds(dataset: str, row: Row, seeds: Sequence[int], protocol: dict[str, Any],
                checkpoint: Path | None = None, every: int = 0, version: str = "",
                inception_n: int = 0) -> list[Run]:
    """Train a row's seeds as one population (trainers.members); runs in a worker process with
    one torch thread. Each run is charged its share of the population's CPU time.

    With `checkpoint`, the population's exact state is saved there every `every` steps and
    training resumes from it (the same trainer `version` only), so a long row survives an
    interruption; the file is removed once the results are returned."""
    set_threads(1)
    fill = not row.recommended  # reference rows take the loss's defaults for the rest
    cfgs = [make_config({**row.values, **protocol, "dataset": dataset, "seed": seed,
                         "eval_every": protocol["steps"],
                         "device": protocol.get("device", "cpu")},
                        fill_loss_defaults=fill) for seed in seeds]
    t0 = time.process_time()
    members, spent = _resume(checkpoint, cfgs, version) if checkpoint else (None, 0.0)
    if members is None:
        members = make_members(cfgs)

    def save() -> None:
        if members.done:
            return
        members.save(checkpoint)
        meta = {"cpu_seconds": spent + time.process_time() - t0, "trainer": version}
        checkpoint.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
        # A long row is otherwise silent for hours: say how far it is, once per save.
        print(f"  {checkpoint.name}: saved at step {members.step:,} of {cfgs[0].steps:,} "
              f"({meta['cpu_seconds']:,.0f} CPU s so far)", file=sys.stderr)

    # The one outer loop; eval_every = steps, so one evaluation, at the end.
    saving = bool(checkpoint) and every > 0
    (finals,) = evaluations(members, chunk=every if saving else 0,
                            trained=save if saving else None)
    share = (spent + time.process_time() - t0) / len(cfgs)
    if inception_n:  # after the CPU count: a metric of the result, not a cost of training
        add_inception(finals, members.sample(), cfgs[0], inception_n)
    if checkpoint:
        checkpoint.unlink(missing_ok=True)
        checkpoint.with_suffix(".json").unlink(missing_ok=True)
    return [Run(row.label, s, m, share) for s, m in zip(seeds, finals, strict=True)]


INCEPTION_KEYS = (names.FID, names.KID, names.PRECISION, names.RECALL, names.DENSITY,
                  names.COVERAGE)


def add_inception(finals: list[dict[str, float]], samples: Any, cfg: Any, n: int) -> None:
    """`inception_<metric>` for each member that did not diverge: its first n final samples
    against n real ones, on Inception-v3 features (FID is biased at small n; KID is not)."""
    data = build_dataset(cfg.replace(eval_samples=n, fid_backend="inception"),
                         samples.device)
    for m, x in zip(finals, samples, strict=True):
        if not m.get(names.DIVERGED):
            got = data.evaluate(x[:n])
            m.update({f"inception_{k}": got[k] for k in INCEPTION_KEYS if k in got})


def _resume(checkpoint: Path, cfgs: list, version: str) -> tuple[Any, float]:
    """The population saved at `checkpoint` and the CPU seconds it had cost, or (None, 0) to
    start over: no file, another trainer version, or other members."""
    meta_path = checkpoint.with_suffix(".json")
    if not (checkpoint.exists() and meta_path.exists()):
        return None, 0.0
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("trainer") != version:
        print(f"  {checkpoint.name}: saved by another version of trainers/; starting over",
              file=sys.stderr)
        return None, 0.0
    members = load_members_file(checkpoint, device=cfgs[0].device)
    if list(members.configs) != cfgs:
        return None, 0.0
    print(f"  {checkpoint.name}: resuming at step {members.step}", file=sys.stderr)
    return members, float(meta["cpu_seconds"])


def _digest(dataset: str, row: Row, protocol: dict[str, Any], seeds: Any,
            inception_n: int = 0) -> str:
    # inception_n joins the key only when asked for: earlier results keep their keys.
    parts = [dataset, row.values, row.recommended, protocol, seeds] + (
        [{"inception_n": inception_n}] if inception_n else [])
    key = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def cache_path(cache: Path, dataset: str, row: Row, seed: int,
               protocol: dict[str, Any], inception_n: int = 0) -> Path:
    """Where one run's result is kept: keyed by everything that decides its training (and
    the Inception evaluation asked for)."""
    return cache / dataset / f"{_digest(dataset, row, protocol, seed, inception_n)}-seed{seed}.json"


def checkpoint_path(cache: Path, dataset: str, row: Row, seeds: Sequence[int],
                    protocol: dict[str, Any], inception_n: int = 0) -> Path:
    """Where a population still training keeps its state: keyed by the row, the protocol and
    the exact seeds it trains."""
    digest = _digest(dataset, row, protocol, list(seeds), inception_n)
    return cache / dataset / f"{digest}-population.pt"


def trainer_version() -> str:
    """A hash of the trainer package's source. The cache key holds the configuration only, so
    a result cached before a trainer change would otherwise be reprinted as if current."""
    h = hashlib.sha256()
    for f in sorted(Path(trainers.__file__).parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def cached_or_trained(pool: ProcessPoolExecutor, jobs: list[tuple[str, Row, int]],
                      protocol: dict[str, Any], cache: Path | None, *, version: str,
                      retrain_stale: bool = False, checkpoint_every: int = 0,
                      inception_n: int = 0) -> tuple[list[Run], int, int]:
    """Train every job not already in `cache` (runs are deterministic per seed on CPU, so a
    cached result is the result); an interrupted table resumes where it stopped.

    Returns (runs, trained now, reused results that another trainer version than `version`
    produced). With `retrain_stale` those are trained again instead of reused.
    """
    runs: list[Run | None] = [None] * len(jobs)
    missing: dict[tuple[str, str], list[int]] = {}
    futures = {}
    stale = 0
    for i, (d, row, s) in enumerate(jobs):
        path = cache and cache_path(cache, d, row, s, protocol, inception_n)
        saved = json.loads(path.read_text(encoding="utf-8")) if path and path.exists() else None
        if saved is not None and saved.get("trainer") != version:
            if retrain_stale:
                saved = None
            else:
                stale += 1
        if saved is not None:
            runs[i] = Run(row.label, s, saved["metrics"], saved["cpu_seconds"])
        else:
            missing.setdefault((d, row.label), []).append(i)
    # A row's missing seeds on one dataset train together, as one batched population.
    for idx in missing.values():
        d, row, _ = jobs[idx[0]]
        seeds = [jobs[i][2] for i in idx]
        ckpt = cache and checkpoint_path(cache, d, row, seeds, protocol, inception_n)
        if ckpt:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
        futures[tuple(idx)] = pool.submit(train_seeds, d, row, seeds, protocol, ckpt or None,
                                          checkpoint_every, version, inception_n)
    bar = Progress(sum(len(i) for i in futures), "mode_coverage", "runs")
    for idx, fut in futures.items():
        for i, run in zip(idx, fut.result(), strict=True):
            d, row, s = jobs[i]
            runs[i] = run
            if cache:
                path = cache_path(cache, d, row, s, protocol, inception_n)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"metrics": run.metrics,
                                            "cpu_seconds": run.cpu_seconds,
                                            "trainer": version}), encoding="utf-8")
            bar.write(f"  {d} | {run.row} | seed {s}: {run.metrics[names.MODES_COVERED]:.0f} "
                      f"modes, HQ {run.metrics[names.HQ_FRACTION]:.1%}, "
                      f"{run.cpu_seconds:.0f} CPU s")
            bar.update_to(bar.n + 1)
    bar.close()
    return [r for r in runs if r is not None], sum(len(i) for i in futures), stale


def succeeded(runs: Sequence[Run]) -> str:
    """Seeds that succeeded under the quality rule, of those judged, with the Wilson 95%
    interval; "–" when none was judged (results cached before the rule)."""
    judged = [r.failed for r in runs if r.failed is not None]
    if not judged:
        return "–"
    ok = len(judged) - sum(judged)
    lo, hi = wilson_interval(ok, len(judged))
    return f"{ok}/{len(judged)} [{lo:.2f}, {hi:.2f}]"


def extra_columns(runs: Sequence[Run], n_inception: int) -> list[tuple[str, str, str]]:
    """(header, metric, format) of the columns some runs have: precision/recall/density/
    coverage on the dataset's own features, and the Inception metrics where asked for."""
    cols = [(names.PRECISION, "precision"), (names.RECALL, "recall"),
            (names.DENSITY, "density"), (names.COVERAGE, "coverage")]
    out = [(label, key, "{:.3f}") for key, label in cols
           if any(key in r.metrics for r in runs)]
    inc = [(f"Inception FID (N={n_inception})", "inception_fid", "{:.1f}"),
           (f"Inception KID (N={n_inception})", "inception_kid", "{:.4f}"),
           ("Inception coverage", "inception_coverage", "{:.3f}")]
    return out + [c for c in inc if any(c[1] in r.metrics for r in runs)]


def row_cells(runs: list[Run], extra: Sequence[tuple[str, str, str]] = ()) -> list[str]:
    ms = [r.metrics for r in runs]
    fids = [m[names.FID] for m in ms if names.FID in m]  # absent for diverged runs
    fid = mean_se(fids, "{:.3g}") + ("" if len(fids) == len(ms) else
                                     f" ({len(fids)} of {len(ms)} runs)")
    n = len(runs)
    judged = [r.failed for r in runs if r.failed is not None]
    failed = f"{sum(judged)}/{len(judged)}" if judged else "–"
    return [mean_se([m[names.MODES_COVERED] for m in ms]),
            mean_se([m[names.MODES_HELD] for m in ms if names.MODES_HELD in m]),
            mean_se([100 * m[names.HQ_FRACTION] for m in ms], "{:.1f}"),
            mean_se([m[names.SEED_SCORE] for m in ms if names.SEED_SCORE in m], "{:.3f}"),
            mean_se([m[names.MODE_KL] for m in ms], "{:.3f}"), fid,
            *[mean_se([m[key] for m in ms if key in m], fmt) for _, key, fmt in extra],
            f"{sum(r.diverged for r in runs)}/{n}", failed, succeeded(runs),
            f"{statistics.fmean(r.cpu_seconds for r in runs):.0f}"]


def dataset_table(dataset: str, runs: list[Run], rows: Sequence[Row],
                  protocol: dict[str, Any], name: str, inception_n: int = 0) -> str:
    k = int(runs[0].metrics[names.NUM_MODES])
    n_eval = protocol["eval_samples"]
    extra = extra_columns(runs, inception_n)
    lines = [f"### {dataset} (K = {k} modes; failed = diverged, or not a success: "
             f"{DEFAULT_RULE.describe()}; {protocols.label(name, protocol, dataset)})", "",
             f"| row | modes captured (of {k}) | modes held | HQ % | score | reverse KL "
             f"| FID (N={n_eval}) | " + "".join(f"{h} | " for h, _, _ in extra)
             + "diverged | failed | succeeded [Wilson 95%] | CPU s / run |",
             "|---" * (11 + len(extra)) + "|"]
    for row in rows:
        rs = [r for r in runs if r.row == row.label]
        if rs:
            lines.append(f"| {row.label} | " + " | ".join(row_cells(rs, extra)) + " |")
    lines += target_lines(dataset, runs, rows, k)
    if dataset in PUBLISHED:
        lines += ["", f"Quoted from the papers, not run here ({PUBLISHED_NOTE[dataset]}; "
                  "2,500 samples; their networks and budgets differ from ours; KL where "
                  "reported):", "", "| quoted row | modes | HQ % | reverse KL |",
                  "|---|---|---|---|"]
        lines += [f"| {label} | {m} | {hq} | {kl} |" for label, m, hq, kl in PUBLISHED[dataset]]
        lines += ["", "The budgets behind the quoted rows (ours is in the header above):", "",
                  *protocols.PUBLISHED_BUDGETS]
    return "\n".join(lines)


def target_lines(dataset: str, runs: list[Run], rows: Sequence[Row], k: int) -> list[str]:
    """Met or missed, per sweep-recommended WGAN-GP row: all K modes held, mean HQ >= goal."""
    out = []
    goal = TARGET_HQ.get(dataset)
    for row in rows:
        rs = [r for r in runs if r.row == row.label]
        if not (goal and row.recommended and row.dataset and rs
                and row.values.get("loss") == "wgan-gp"):
            continue
        held = [r.held for r in rs]
        hq = statistics.fmean(r.metrics[names.HQ_FRACTION] for r in rs)
        every = sum(h == k for h in held)
        met = every == len(rs) and hq >= goal
        out.append(f"\nTarget for {row.label} ({k}/{k} modes held on every seed and mean HQ "
                   f">= {goal:.0%}): **{'met' if met else 'missed'}** - mean "
                   f"{statistics.fmean(held):.2f} modes held ({every} of {len(rs)} seeds hold "
                   f"all {k}), mean HQ {hq:.1%}.")
    return out


def protocol_text(protocol: dict[str, Any], seeds: Sequence[int], rows: Sequence[Row],
                  workers: int, name: str) -> str:
    base = make_config(protocol)
    lines = [f"protocol {name}: {protocol['steps']} generator steps, batch {base.batch_size}, "
             f"networks width {base.hidden} (MLP depth {base.depth}, {base.activation}, "
             f"{base.init} init, for 2D data; conv nets for images), z_dim {base.z_dim}, "
             f"evaluation on N = {base.eval_samples} "
             f"generated samples (FID against {base.eval_samples} real), seeds "
             f"{seeds[0]}..{seeds[-1]} (mean ± s.e. over {len(seeds)}), a row's seeds "
             f"trained as one batched population (trainers/members.py) on 1 torch thread, "
             f"{workers} population(s) at once, on {protocol.get('device', 'cpu')}; CPU s are "
             "each seed's share; FID is on "
             "raw coordinates for 2D data and on the evaluation classifier's features for "
             "images (trainers/classifier.py), "
             "comparable only within this repository", "", "hyperparameters per row:"]
    for row in rows:
        c = make_config({**row.values, **protocol}, fill_loss_defaults=not row.recommended)
        extra = {"wgan-gp": f", lambda {c.gp_lambda:.3g}",
                 "wgan-clip": f", clip {c.clip_value:.3g}"}.get(c.loss, "")
        betas = f", betas ({c.beta1:g}, {c.beta2:g})" if c.optimizer == "adam" else ""
        where = (f" [{row.dataset} only]" if row.dataset else " [every dataset]"
                 if row.recommended else " [reference defaults]")
        lines.append(f"- {row.label}{where}: {c.optimizer} lr_g {c.lr_g:.3g}, lr_d "
                     f"{c.lr_d:.3g} ({c.lr_schedule}){betas}, n_critic {c.n_critic}{extra}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke-test", action="store_true",
                   help="tiny networks, 2 seeds, 10 steps: checks the script, not the losses")
    p.add_argument("--protocol", choices=sorted(protocols.PROTOCOLS), default="short",
                   help="the budget and networks every row trains with (benchmarks/"
                   "protocols.py); --steps, --hidden, --batch-size change one part of it")
    p.add_argument("--losses", default="bce,bce-ns,wgan-clip,wgan-gp",
                   help="rows at reference defaults, comma-separated ('' for none)")
    p.add_argument("--recommended", type=Path, action="append", default=[],
                   help="a `sweeper stable --export` YAML; one row on its dataset (repeatable)")
    p.add_argument("--transfer", type=Path, action="append", default=[],
                   help="like --recommended, but one row on every dataset (repeatable)")
    p.add_argument("--datasets", default="ring8,grid25", help="comma-separated")
    p.add_argument("--seeds", type=int, default=10, help="N seeds per row and dataset")
    p.add_argument("--seed-start", type=int, default=0,
                   help="the first seed (S .. S+N-1): fresh seeds for a confirmation")
    p.add_argument("--steps", type=int, help="generator steps per run (default: the protocol's)")
    p.add_argument("--hidden", type=int, help="network width (default: the protocol's)")
    p.add_argument("--batch-size", type=int, help="default: the protocol's")
    p.add_argument("--eval-samples", type=int, help="N (default: the protocol's; PacGAN: 2,500)")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                   help="runs at once, one torch thread each")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), or cuda / cuda:N / auto: each population on that "
                   "device (part of the cache key when not cpu)")
    p.add_argument("--cache", type=Path, help="keep each run's result here and reuse it: "
                   "rerunning resumes an interrupted table, or adds rows to it")
    p.add_argument("--checkpoint-every", type=int, default=1000,
                   help="with --cache: save a population still training every this many "
                   "steps, so an interrupted row resumes (0: never)")
    p.add_argument("--retrain-stale", action="store_true",
                   help="retrain cached runs that another version of trainers/ produced "
                   "(by default they are reused and counted in the table's last line)")
    p.add_argument("--inception-n", type=int, default=0,
                   help="also score each seed's first N final samples on Inception-v3 "
                   "features (needs gan-sweeper[inception]; part of the cache key)")
    p.add_argument("--out", type=Path, help="also write the markdown to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke_test:
        args.steps, args.hidden, args.batch_size, args.eval_samples = 10, 8, 32, 500
        args.seeds = 2
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    datasets = args.datasets.split(",")
    try:  # fail fast on a typo or a bad file, before any training
        protocol = protocols.resolve(args.protocol, steps=args.steps, hidden=args.hidden,
                                     batch_size=args.batch_size,
                                     eval_samples=args.eval_samples,
                                     device=None if args.device == "cpu" else args.device)
        resolve_device(args.device)  # a missing GPU is one line here, not a worker's traceback
        rows = [Row(loss, None, {"loss": loss}) for loss in filter(None, args.losses.split(","))]
        rows += [recommended_row(p) for p in args.recommended]
        rows += [recommended_row(p, everywhere=True) for p in args.transfer]
        for dataset in datasets:
            make_config({**protocol, "dataset": dataset})
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not rows or args.seeds < 1 or args.workers < 1 or args.seed_start < 0:
        print("error: give at least one row (--losses or --recommended), --seeds >= 1, "
              "--seed-start >= 0 and --workers >= 1", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    jobs = [(d, row, s) for d in datasets for row in rows if row.dataset in (None, d)
            for s in seeds]
    version = trainer_version()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        done, fresh, stale = cached_or_trained(pool, jobs, protocol, args.cache,
                                               version=version,
                                               retrain_stale=args.retrain_stale,
                                               checkpoint_every=args.checkpoint_every,
                                               inception_n=args.inception_n)
    runs: dict[str, list[Run]] = {d: [] for d in datasets}
    for (d, _, _), run in zip(jobs, done, strict=True):
        runs[d].append(run)
    sections = [protocol_text(protocol, seeds, rows, args.workers, args.protocol)]
    sections += [dataset_table(d, runs[d], rows, protocol, args.protocol, args.inception_n)
                 for d in datasets if runs[d]]
    cpu = sum(r.cpu_seconds for rs in runs.values() for r in rs)
    sections.append(f"total wall time: {time.perf_counter() - t0:.0f} s ({len(jobs)} runs, "
                    f"{fresh} trained now, {len(jobs) - fresh} from --cache; "
                    f"{cpu:.0f} CPU s of training and evaluation in all)")
    if stale:
        sections.append(f"**{stale} of the runs from --cache were trained by another (or an "
                        f"unrecorded) version of trainers/, not this one ({version})"
                        "**; `--retrain-stale` trains them again.")
    text = "## Mode coverage\n\n" + "\n\n".join(sections) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
