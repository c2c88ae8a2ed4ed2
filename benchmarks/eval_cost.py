"""What an evaluation costs: seconds per 1,000 samples for each feature backend, and the share
of a trial's time the evaluations take in the shipped image spaces at their eval_every.

    python -m benchmarks.eval_cost              # the table in docs/results.md (~15 min, 2 CPUs)
    python -m benchmarks.eval_cost --smoke-test # tiny sizes, for the tests

Section 1 times `Dataset.evaluate` on a fresh real draw (the real side, its features and
k-NN radii are built once before timing, as in a trial), best of `--repeats`, and the
precision/recall/density/coverage pass alone on the same features. Section 2 trains the
shipped spaces' reference setting for a few steps to get seconds per step, and combines it
with section 1: share = evals x eval_s / (steps x step_s + evals x eval_s), at n_critic 1
and 5, the ends of the range the spaces sample (n_critic 1 trains cheapest, so its share is
the largest a trial of the space can see).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch
import yaml

from benchmarks._common import machine_header
from trainers import prdc
from trainers.config import make_config
from trainers.data import build_dataset
from trainers.loop import Trainer


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def backend_rows(smoke: bool, repeats: int, inception: bool, tmp: str, device: str = "cpu"
                 ) -> list[tuple[str, str, int, float, float]]:
    """(dataset, backend, N, evaluate seconds, PRDC seconds) per row."""
    n_2d, n_img, n_stacked, n_inc = (300, 300, 600, 16) if smoke else (2500, 2500, 26000, 500)
    rng = np.random.default_rng(0)
    np.save(f"{tmp}/rgb32.npy", rng.integers(0, 256, (max(n_img, n_inc) * 2, 3, 32, 32),
                                             dtype=np.uint8))
    cases = [("ring8", "auto", n_2d), ("digits", "classifier", n_img),
             ("digits", "pixels", n_img), ("stacked-digits", "classifier", n_stacked),
             (f"npy:{tmp}/rgb32.npy", "pixels", n_img)]
    if inception:
        cases += [("digits", "inception", n_inc), (f"npy:{tmp}/rgb32.npy", "inception", n_inc)]
    rows = []
    for dataset, backend, n in cases:
        data = build_dataset(make_config({"dataset": dataset, "eval_samples": n,
                                          "fid_backend": backend, "device": device}),
                             torch.device(device))
        fake = data.sample(n, torch.Generator(device).manual_seed(99))
        data.evaluate(fake)  # the real side, once, as the first evaluation of a trial does
        seconds = _best_of(lambda d=data, f=fake: d.evaluate(f), repeats)
        feats = np.asarray(rng.standard_normal((n, _feature_dim(data, backend))))
        real = prdc.manifold(feats)
        prdc_s = _best_of(lambda r=real, f=feats: prdc.prdc(r, f), repeats)
        label = "rgb 32x32 (npy:)" if dataset.startswith("npy:") else dataset
        rows.append((label, backend, n, seconds, prdc_s))
    return rows


def _feature_dim(data, backend: str) -> int:
    if backend == "inception":
        return 2048
    if data.kind == "points":
        return data.shape[0]
    if backend == "pixels":
        c, h, w = data.shape
        return c * min(h, 16) * min(w, 16)
    return data.classifier.feature_dim


def share_rows(smoke: bool, table: list[tuple[str, str, int, float, float]], device: str = "cpu"
               ) -> list[tuple[str, int, int, int, float, float, str]]:
    """(space, n_critic, steps, evals, seconds per step, evaluation share, backend) rows."""
    per_1000 = {(d, b): s / n * 1000 for d, b, n, s, _ in table}
    rows = []
    for space in ("digits", "stacked-digits-wgan-gp"):
        with open(f"search_spaces/{space}.yaml") as f:
            fixed = yaml.safe_load(f)["fixed"]
        steps, every, n = fixed["steps"], fixed["eval_every"], fixed["eval_samples"]
        probe = 3 if smoke else 30
        # The spaces sample n_critic in [1, 5]: the share lies between these two.
        for n_critic in (1, 5):
            cfg = make_config({**fixed, "steps": probe, "eval_every": probe,
                               "n_critic": n_critic, "eval_samples": 64, "device": device})
            trainer = Trainer(cfg)
            trainer.run()
            step_s = trainer.train_seconds / probe
            evals = steps // every
            train_total = steps * step_s
            # Inception's cost does not depend on the image (each is resized to 299 x 299):
            # the digits row stands for the stacked set too.
            costs = {"classifier": per_1000.get((fixed["dataset"], "classifier")),
                     "inception": per_1000.get(("digits", "inception"))}
            for backend, cost in costs.items():
                if cost is None:
                    continue
                eval_total = evals * cost * n / 1000
                rows.append((space, n_critic, steps, evals, step_s,
                             eval_total / (train_total + eval_total), backend))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke-test", action="store_true", help="Tiny sizes, for the tests.")
    p.add_argument("--repeats", type=int, default=3, help="Timings per row (best of).")
    p.add_argument("--device", default="cpu", help="cpu or cuda (evaluation on that device).")
    p.add_argument("--no-inception", action="store_true",
                   help="Skip the Inception rows (they need gan-sweeper[inception]).")
    args = p.parse_args(argv)
    from trainers.inception import weights_path

    path = weights_path()
    inception = not args.no_inception and path is not None and path.is_file()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = backend_rows(args.smoke_test, 1 if args.smoke_test else args.repeats,
                             inception, tmp, args.device)
    print("## Evaluation cost per feature backend\n")
    print(machine_header(f"torch threads {torch.get_num_threads()}, device {args.device}")
          + "\n")
    print("| data | features | N | evaluate s | s per 1,000 samples | PRDC s (same N) |")
    print("|---|---|---|---|---|---|")
    for d, b, n, s, ps in table:
        print(f"| {d} | {b} | {n:,} | {s:.3f} | {s / n * 1000:.3f} | {ps:.3f} |")
    if not inception:
        print("\nInception rows skipped: pip install 'gan-sweeper[inception]'.")
    print("\n## Evaluation share of a trial (shipped image spaces, their eval_every)\n")
    print("| space | n_critic | steps | evaluations | s per step | features | evaluation share |")
    print("|---|---|---|---|---|---|---|")
    for space, n_critic, steps, evals, step_s, share, backend in share_rows(
            args.smoke_test, table, args.device):
        print(f"| {space} | {n_critic} | {steps:,} | {evals} | {step_s:.3f} | {backend} | "
              f"{share:.1%} |")


if __name__ == "__main__":
    main()
