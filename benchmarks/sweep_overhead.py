"""What does the sweep machinery cost? Efficiency and per-trial overhead of Tune + MLflow.

A fixed grid of equal-cost 2D trials (WGAN-GP on ring8; only lambda varies, which does not
change the cost) runs as a real sweep (local Ray, Optuna, MLflow in sqlite) on this machine,
once with reuse_actors off and once on. For each we print, side by side:

  efficiency = sum of the trials' own training+evaluation time / (wall time x concurrency)
  overhead per trial = (wall x concurrency - sum of trial time) / trials, in seconds

Usage:  python -m benchmarks.sweep_overhead [--trials 8] [--steps 400] [--smoke-test]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

from sweeper.track import store, tags
from sweeper.track.metric_keys import metrics_of
from sweeper.tune.driver import SweepOptions, run_sweep
from sweeper.tune.spaces import load_space
from trainers import names


def one_sweep(root: Path, *, trials: int, steps: int, seeds: int, reuse: bool,
              concurrency: int, hidden: int = 64, address: str | None = None,
              name: str | None = None, batch_seeds: bool = True) -> dict[str, float]:
    """Run one sweep of equal-cost trials in `root` (MLflow in root/mlflow.db, experiment
    `name`) on local Ray, or on the cluster at `address` (its auth env must be set)."""
    space_file = root / "space.yaml"
    space_file.write_text(yaml.safe_dump({
        "description": "equal-cost trials for the overhead benchmark",
        "fixed": {"dataset": "ring8", "loss": "wgan-gp", "n_critic": 5, "steps": steps,
                  "eval_every": max(1, steps // 4), "hidden": hidden, "batch_size": 128},
        "params": {"gp_lambda": {"log_uniform": [1.0, 10.0]}}}))
    name = name or f"overhead-reuse-{reuse}"
    opts = SweepOptions(
        space=load_space(str(space_file)), name=name, num_samples=trials,
        max_concurrent=concurrency, seeds=seeds, tracking_uri=f"sqlite:///{root}/mlflow.db",
        sweep_dir=root / "sweeps", address=address, early_stop=False, max_failures=0,
        reuse_actors=reuse, sampler_seed=0, command="benchmark", batch_seeds=batch_seeds)
    started_at = time.time()  # epoch, to line up with MLflow's run timestamps
    t0 = time.perf_counter()
    rows = run_sweep(opts, resume=False)
    wall = time.perf_counter() - t0
    c = store.client(opts.tracking_uri)
    exp = c.get_experiment_by_name(name)
    seed_runs = c.search_runs([exp.experiment_id], max_results=1000,
                              filter_string=f"tags.`{tags.TAG_KIND}` = 'seed'")
    busy = sum(metrics_of(r)[names.TRAIN_SECONDS] + metrics_of(r)[names.EVAL_SECONDS]
               for r in seed_runs)
    assert len(rows) == trials and len(seed_runs) == trials * seeds
    return {"wall": wall, "busy": busy, "efficiency": busy / (wall * concurrency),
            "overhead": (wall * concurrency - busy) / trials, "trial": busy / trials,
            "started_at": started_at}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--smoke-test", action="store_true", help="2 tiny trials, one mode")
    a = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    concurrency = min(2, len(os.sched_getaffinity(0)))
    modes = [True] if a.smoke_test else [False, True]
    trials, steps = (2, 20) if a.smoke_test else (a.trials, a.steps)
    results = {}
    for reuse in modes:
        with tempfile.TemporaryDirectory() as d:
            results[reuse] = one_sweep(Path(d), trials=trials, steps=steps, seeds=a.seeds,
                                       reuse=reuse, concurrency=concurrency)
    print(f"\n{trials} trials x {a.seeds} seed(s), WGAN-GP ring8, {steps} steps, hidden 64, "
          f"batch 128, n_critic 5; {concurrency} concurrent on {os.cpu_count()} CPUs")
    print("| reuse_actors | wall s | sum trial s | trial s | efficiency | overhead s/trial |")
    print("|---|---|---|---|---|---|")
    for reuse, r in results.items():
        print(f"| {reuse} | {r['wall']:.1f} | {r['busy']:.1f} | {r['trial']:.1f} | "
              f"{r['efficiency']:.2f} | {r['overhead']:.2f} |")
    if len(results) == 2:
        print(f"wall(reuse on) / wall(reuse off) = "
              f"{results[True]['wall'] / results[False]['wall']:.2f}")


if __name__ == "__main__":
    main()
