"""Digits on one CPU core: the sweep's trial budget, the scorer behind it, and two losses.

Prints markdown, each section with its protocol:
  1. the evaluation classifier: held-out accuracy, training time, confident share of real data;
  2. FID and KID of real data against an independent real draw at N = eval_samples (the floor
     a generator can reach: FID is biased upward at finite N), for digits and stacked-digits;
  3. one default digits WGAN-GP trial (search_spaces/digits.yaml's fixed values, the loss's
     reference defaults for the rest), evaluated every --eval-every steps: CPU and wall time,
     and the first step with hq_fraction >= 0.5, with modes_covered = 10, and with both;
  4. bce-ns vs wgan-gp on digits and stacked-digits over --seeds seeds (mean +- s.e.);
  5. with --compare-torchmetrics (if installed): torchmetrics' FID/KID on the same features
     against ours, the check behind trainers/images.py's choice of implementation.

Times are CPU seconds of this process (time.process_time, which other jobs on a shared machine
do not inflate) with wall seconds beside them; torch runs on --threads threads (default 1).

    python -m benchmarks.digits_budget                 # ~12 CPU minutes on one core
    python -m benchmarks.digits_budget --sections 3    # the budget trial alone, ~70 s CPU
    python -m benchmarks.digits_budget --smoke-test    # tiny budgets, ~15 s CPU
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks._common import mean_se
from sweeper.bars import Progress
from trainers import classifier as clf
from trainers import metrics, names
from trainers.config import make_config
from trainers.data import build_dataset
from trainers.images import ImageDataset, kid
from trainers.loop import Trainer, set_threads
from trainers.population import evaluations

ROOT = Path(__file__).resolve().parents[1]

SPACE = ROOT / "search_spaces" / "digits.yaml"
CPU = torch.device("cpu")
LOSSES = ("bce-ns", "wgan-gp")
DATASETS = ("digits", "stacked-digits")


class Clock:
    """CPU and wall seconds since construction."""

    def __init__(self) -> None:
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    @property
    def cpu(self) -> float:
        return time.process_time() - self.cpu0

    @property
    def wall(self) -> float:
        return time.perf_counter() - self.wall0


def budget_fixed() -> dict[str, Any]:
    return dict(yaml.safe_load(SPACE.read_text(encoding="utf-8"))["fixed"])


# ---------------------------------------------------------------------------- 1. classifier
def classifier_section(fresh: bool) -> str:
    data = build_dataset(make_config({"dataset": "digits", "eval_samples": 2}), CPU)
    split = data.source.split()
    lines = ["## 1. Evaluation classifier (digits)", ""]
    if fresh:
        c = Clock()
        model = clf.train_classifier(split, epochs=data.source.epochs)
        lines.append(f"- trained from scratch: {data.source.epochs} epochs on "
                     f"{len(split.x_train)} images in {c.cpu:.1f} s CPU ({c.wall:.1f} s wall)")
        cached = data.classifier
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                     cached.state_dict().values(), strict=True))
        lines.append(f"- identical to the cached classifier: {'yes' if same else 'NO'}")
    model = data.classifier
    _, conf_test, _ = model.predict(split.x_test)
    _, conf_all, _ = model.predict(data.images[:, None])
    from trainers.images import CONFIDENCE_THRESHOLD as th

    lines += [
        f"- held-out accuracy: {model.test_accuracy:.2%} on {len(split.x_test)} test images "
        "(fixed stratified 80/20 split, seed 0)",
        f"- confidence >= {th}: {(conf_test >= th).float().mean():.1%} of test images, "
        f"{(conf_all >= th).float().mean():.1%} of all 1,797", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- 2. real floor
def real_floor_section(n: int, draws: int) -> tuple[str, dict[str, dict[str, float]]]:
    lines = [f"## 2. Real vs independent real draw (N = {n}, {draws} draws; the floor)", "",
             "| dataset | FID min | FID mean | FID max | KID mean ± s.e. | modes | HQ % |",
             "|---|---|---|---|---|---|---|"]
    floors = {}
    for name in DATASETS:
        data = build_dataset(make_config({"dataset": name, "eval_samples": n}), CPU)
        ms = [data.evaluate(data.sample(n, torch.Generator().manual_seed(100 + i)))
              for i in range(draws)]
        fid = [m[names.FID] for m in ms]
        floors[name] = {k: statistics.fmean(m[k] for m in ms) for k in ms[0]}
        lines.append(f"| {name} | {min(fid):.2f} | {statistics.fmean(fid):.2f} | "
                     f"{max(fid):.2f} | {mean_se([m[names.KID] for m in ms])} | "
                     f"{mean_se([m[names.MODES_COVERED] for m in ms], '{:.0f}')} | "
                     f"{mean_se([100 * m[names.HQ_FRACTION] for m in ms], '{:.1f}')} |")
    return "\n".join(lines + [""]), floors


# ---------------------------------------------------------------------------- 3. budget trial
def budget_section(overrides: dict[str, Any], eval_every: int) -> str:
    fixed = {**budget_fixed(), **overrides}
    sweep_every = fixed["eval_every"]
    cfg = make_config({**fixed, "eval_every": eval_every, "seed": 0, "device": "cpu"})
    c = Clock()
    t = Trainer(cfg)
    setup_cpu = c.cpu
    train_cpu = eval_cpu = 0.0
    rows, first = [], {}
    tick = {"start": time.process_time()}  # CPU clock where this interval's phases began

    def trained() -> None:
        tick["evaluate"] = time.process_time()

    for m in evaluations(t, trained=trained):  # the outer loop every trial runs
        now = time.process_time()
        train_cpu += tick["evaluate"] - tick["start"]
        eval_cpu += now - tick["evaluate"]
        tick["start"] = now
        rows.append((t.step, train_cpu, c.wall, m))
        hq = m.get(names.HQ_FRACTION, 0) >= 0.5
        full = m.get(names.MODES_COVERED, 0) == m[names.NUM_MODES]
        for key, ok in (("hq", hq), ("modes", full), ("both", hq and full)):
            if ok and key not in first:
                first[key] = (t.step, train_cpu)
    n_evals = len(rows)
    per_eval = eval_cpu / n_evals
    sweep_evals = math.ceil(cfg.steps / sweep_every)
    est = setup_cpu + train_cpu + sweep_evals * per_eval
    lines = [
        "## 3. Default digits WGAN-GP trial on one core", "",
        f"Protocol: {SPACE.relative_to(ROOT)} fixed values ({_fmt(fixed)}) with wgan-gp's "
        f"reference defaults (n_critic {cfg.n_critic}, lambda {cfg.gp_lambda:g}, Adam "
        f"{cfg.lr_g:g}, betas ({cfg.beta1}, {cfg.beta2})), seed 0, evaluated every {eval_every} "
        f"steps on {cfg.eval_samples} samples.", "",
        f"- training: {train_cpu:.1f} s CPU for {cfg.steps} steps "
        f"({1000 * train_cpu / cfg.steps:.0f} ms/step); setup {setup_cpu:.1f} s; "
        f"{per_eval:.2f} s CPU per evaluation ({n_evals} here)",
        f"- whole run here: {c.cpu:.1f} s CPU, {c.wall:.1f} s wall",
        f"- one sweep trial (evaluating every {sweep_every} steps, {sweep_evals} evaluations): "
        f"~{est:.0f} s CPU",
    ]
    for key, label in (("hq", "hq_fraction >= 0.5"), ("modes", "modes_covered = 10"),
                       ("both", "both")):
        if key in first:
            step, sec = first[key]
            lines.append(f"- first reached {label}: step {step} ({sec:.1f} s CPU of training)")
        else:
            lines.append(f"- never reached {label} within {cfg.steps} steps")
    lines += ["", "| step | train CPU s | wall s | modes | HQ % | mode KL | FID | KID |",
              "|---|---|---|---|---|---|---|---|"]
    for step, cpu, wall, m in rows:
        lines.append(f"| {step} | {cpu:.1f} | {wall:.1f} | {m[names.MODES_COVERED]:.0f} | "
                     f"{100 * m[names.HQ_FRACTION]:.1f} | {m[names.MODE_KL]:.3f} | "
                     f"{m[names.FID]:.2f} | {m[names.KID]:.2f} |")
    return "\n".join(lines + [""])


def _fmt(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())


# ---------------------------------------------------------------------------- 4. loss table
def table_section(overrides: dict[str, Any], seeds: int,
                  floors: dict[str, dict[str, float]]) -> str:
    fixed = {k: v for k, v in {**budget_fixed(), **overrides}.items()
             if k not in ("dataset", "loss")}
    steps = fixed["steps"]
    lines = [f"## 4. bce-ns vs wgan-gp ({seeds} seeds, mean ± s.e.)", "",
             f"Protocol: {_fmt(fixed)}; each loss with its reference defaults (make_config); "
             f"scored once after {steps} generator steps on {fixed['eval_samples']} samples. "
             "'real' is section 2's floor at the same N.", ""]
    c_all = Clock()
    bar = Progress(len(DATASETS) * len(LOSSES) * seeds, "digits_budget loss table", "runs")
    for name in DATASETS:
        k = 10 if name == "digits" else 1000
        lines += [f"### {name} (K = {k})", "",
                  f"| loss | modes (of {k}) | HQ % | mode KL | FID | KID | CPU s / run |",
                  "|---|---|---|---|---|---|---|"]
        f = floors[name]
        lines.append(f"| real | {f[names.MODES_COVERED]:.0f} | {100 * f[names.HQ_FRACTION]:.1f} "
                     f"| {f[names.MODE_KL]:.3f} | {f[names.FID]:.2f} | {f[names.KID]:.2f} | – |")
        for loss in LOSSES:
            runs = []
            for seed in range(seeds):
                cfg = make_config({**fixed, "dataset": name, "loss": loss, "seed": seed,
                                   "eval_every": steps, "device": "cpu"})
                c = Clock()
                m = Trainer(cfg).run()
                runs.append((m, c.cpu))
                bar.update_to(bar.n + 1)
            ok = [m for m, _ in runs if not m[names.DIVERGED]]
            div = len(runs) - len(ok)
            cells = [_column(ok, key, fmt, scale) for key, fmt, scale in (
                (names.MODES_COVERED, "{:.1f}", 1.0), (names.HQ_FRACTION, "{:.1f}", 100.0),
                (names.MODE_KL, "{:.3f}", 1.0), (names.FID, "{:.2f}", 1.0),
                (names.KID, "{:.2f}", 1.0))]
            lines.append(f"| {loss}{f' ({div} diverged)' if div else ''} | "
                         f"{' | '.join(cells)} | "
                         f"{statistics.fmean(cpu for _, cpu in runs):.1f} |")
        lines.append("")
    bar.close()
    lines.append(f"Table total: {c_all.cpu:.0f} s CPU, {c_all.wall:.0f} s wall.")
    return "\n".join(lines + [""])


def _column(runs: list[dict[str, float]], key: str, fmt: str, scale: float) -> str:
    return mean_se([scale * m[key] for m in runs], fmt) if runs else "–"


class _Features(torch.nn.Module):
    """The classifier features of a dataset as a torchmetrics `feature=` module."""

    def __init__(self, data: ImageDataset) -> None:
        super().__init__()
        self.data = data
        self.num_features = 64 * data.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.data.classify(x)[2]


# ---------------------------------------------------------------------------- 5. torchmetrics
def torchmetrics_section(n: int) -> str:
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError:
        return "## 5. torchmetrics cross-check\n\ntorchmetrics is not installed: skipped.\n"
    lines = [f"## 5. torchmetrics cross-check (N = {n}, classifier features)", "",
             "torchmetrics' FrechetInceptionDistance and KernelInceptionDistance with `feature=` "
             "the classifier. Its KID uses one subset of all N, the full unbiased estimate, so "
             "it is compared with ours over one block of all N (`kid(..., block=N)`); our "
             "default averages blocks of >= 1,000 and differs from both by sampling noise.",
             "", "| dataset | fake | FID torchmetrics | FID ours | rel. diff | KID torchmetrics "
             "| KID ours | rel. diff |", "|---|---|---|---|---|---|---|---|"]
    for name in DATASETS:
        data: ImageDataset = build_dataset(make_config({"dataset": name, "eval_samples": n}),
                                           CPU)
        real = data.sample(n, torch.Generator().manual_seed(1234))
        fakes = {"real draw": data.sample(n, torch.Generator().manual_seed(5)),
                 "uniform noise": torch.rand(n, *data.shape) * 2 - 1}
        for label, fake in fakes.items():
            tm_fid = FrechetInceptionDistance(feature=_Features(data))
            tm_kid = KernelInceptionDistance(feature=_Features(data), subsets=1, subset_size=n)
            for metric in (tm_fid, tm_kid):
                metric.update(real, real=True)
                metric.update(fake, real=False)
            fr = data.classify(real)[2].double().numpy()
            ff = data.classify(fake)[2].double().numpy()
            ours_fid, ours_kid = metrics.fid(fr, ff), kid(fr, ff, block=n)
            a, b = tm_fid.compute().item(), tm_kid.compute()[0].item()
            lines.append(f"| {name} | {label} | {a:.6g} | {ours_fid:.6g} | "
                         f"{abs(a - ours_fid) / abs(ours_fid):.1e} | {b:.6g} | {ours_kid:.6g} | "
                         f"{abs(b - ours_kid) / abs(ours_kid):.1e} |")
    return "\n".join(lines + [""])


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke-test", action="store_true", help="Tiny budgets, for the tests.")
    p.add_argument("--seeds", type=int, default=3, help="Seeds per (loss, dataset) in 4.")
    p.add_argument("--eval-every", type=int, default=50, help="Evaluation period in 3.")
    p.add_argument("--draws", type=int, default=5, help="Independent real draws in 2.")
    p.add_argument("--threads", type=int, default=1, help="torch threads.")
    p.add_argument("--sections", default="1,2,3,4",
                   help="Comma-separated sections to run (4 also computes 2's floor).")
    p.add_argument("--compare-torchmetrics", action="store_true", help="Add section 5.")
    p.add_argument("--out", type=Path, default=None, help="Also write the report here.")
    args = p.parse_args(argv)
    set_threads(args.threads)
    overrides: dict[str, Any] = {}
    n = budget_fixed()["eval_samples"]
    if args.smoke_test:
        n = 200
        overrides = {"steps": 10, "eval_samples": n}
        args.seeds, args.eval_every, args.draws = 1, 5, 2
    sections = {s.strip() for s in args.sections.split(",")}
    clock = Clock()
    parts = [f"# Digits budget (torch threads: {torch.get_num_threads()})", ""]
    if "1" in sections:
        parts.append(classifier_section(fresh=not args.smoke_test))
    if sections & {"2", "4"}:
        floor_text, floors = real_floor_section(n, args.draws)
        parts += [floor_text] if "2" in sections else []
    if "3" in sections:
        parts.append(budget_section(overrides, args.eval_every))
    if "4" in sections:
        parts.append(table_section(overrides, args.seeds, floors))
    if args.compare_torchmetrics:
        parts.append(torchmetrics_section(n))
    parts.append(f"Total: {clock.cpu:.0f} s CPU, {clock.wall:.0f} s wall.")
    text = "\n".join(parts) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
