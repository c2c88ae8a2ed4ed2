"""Fused against unfused: the same sweep with one setting per trial and with `--fuse`.

Both arms run the default space (ring8, 1,200 steps, linear decay; loss, n_critic, lambda or
clip and both learning rates sampled) with the same budget: N settings x k seeds, TPE with
the same sampler seed, early stopping on (ASHA across trials unfused; successive halving at
the same rungs inside each fused trial), as many trials at once as the CPUs (or GPUs) fit,
one after the other in this process on an otherwise idle machine. For each arm it prints:

  wall s         the sweep's wall time (Ray start to the results table)
  trainer s      the seconds the trainers spent training and evaluating, summed over every
                 seed run (each member's share of its population's time)
  efficiency     trainer s / (wall s x trials at once): how much of the machine trained
  best           the sweep's best setting (lowest objective) and its objective
  confirmed      `sweeper stable --confirm C --top 1`: the setting `stable` ranks first,
                 re-trained on C fresh seeds, its success rate and Wilson 95% interval

and the ratio of the wall times. The goal (issue 37): >= 2x less wall time for the same N
settings on 2 CPUs, with the fused arm's confirmed success rate inside the unfused arm's
Wilson interval.

Usage:  python -m benchmarks.fused_sweep [--num-samples 48] [--seeds 3] [--fuse auto]
                                          [--sampler-seed 0] [--confirm 10]
                                          [--gpus-per-trial 0] [--keep DIR] [--smoke-test]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine_header
from sweeper.track import store, tags
from sweeper.track.metric_keys import metrics_of
from sweeper.tune.driver import SweepOptions, run_sweep
from sweeper.tune.spaces import load_space
from trainers import names

SWEEPER = str(Path(sys.executable).with_name("sweeper"))
SMOKE_FIXED = {"steps": 40, "eval_every": 20, "eval_samples": 300}


def one_arm(root: Path, fuse: str, a: argparse.Namespace) -> dict[str, Any]:
    """Run the sweep with this --fuse in `root`, then confirm its top setting."""
    space = load_space("default")
    if a.smoke_test:
        space = dataclasses.replace(space, fixed={**space.fixed, **SMOKE_FIXED})
    name = f"fuse-{fuse}"
    uri = f"sqlite:///{root}/mlflow.db"
    opts = SweepOptions(space=space, name=name, num_samples=a.num_samples, seeds=a.seeds,
                        tracking_uri=uri, sweep_dir=root / "sweeps", sampler_seed=a.sampler_seed,
                        gpus_per_trial=a.gpus_per_trial, command="benchmark", fuse=fuse)
    t0 = time.perf_counter()
    rows = run_sweep(opts, resume=False)
    wall = time.perf_counter() - t0
    saved = json.loads((root / "sweeps" / name / "sweep_options.json").read_text())
    c = store.client(uri)
    exp = c.get_experiment_by_name(name)
    seed_runs = c.search_runs([exp.experiment_id], max_results=5000,
                              filter_string=f"tags.`{tags.TAG_KIND}` = 'seed'")
    busy = sum(metrics_of(r).get(names.TRAIN_SECONDS, 0.0)
               + metrics_of(r).get(names.EVAL_SECONDS, 0.0) for r in seed_runs)
    at_once = _trials_at_once(a)
    best = rows[0]
    out = {"fuse": int(saved["fuse"]), "wall": wall, "busy": busy, "at_once": at_once,
           "efficiency": busy / (wall * at_once), "settings": len(rows),
           "finished": sum(r["status"] == "finished" for r in rows),
           "best_objective": best["objective"], "best_params": best["params"]}
    if a.confirm:
        p = subprocess.run([SWEEPER, "stable", "--experiment", name, "--tracking-uri", uri,
                            "--confirm", str(a.confirm), "--top", "1", "--json",
                            "--min-seeds", str(min(3, a.seeds))],
                           capture_output=True, text=True, cwd=root, timeout=3600,
                           env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        if p.returncode != 0:
            raise SystemExit(f"stable --confirm failed: {p.stderr[-2000:]}")
        confirmed = [e for e in json.loads(p.stdout)["ranked"] if e.get("source") == "confirm"]
        if confirmed:
            e = confirmed[0]
            out["confirmed"] = {"label": e["label"], "successes": e["successes"],
                                "seeds": e["n_seeds"], "rate": e["success_rate"],
                                "wilson": e["success_wilson"]}
    return out


def _trials_at_once(a: argparse.Namespace) -> int:
    if a.gpus_per_trial:
        import torch

        return max(1, int(torch.cuda.device_count() / a.gpus_per_trial + 1e-9))
    return max(1, len(os.sched_getaffinity(0)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-samples", type=int, default=48)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fuse", default="auto", help="the fused arm's --fuse (a number or auto)")
    ap.add_argument("--sampler-seed", type=int, default=0)
    ap.add_argument("--confirm", type=int, default=10, help="fresh seeds for the top setting")
    ap.add_argument("--gpus-per-trial", type=float, default=0.0)
    ap.add_argument("--keep", type=Path, default=None, help="keep both sweeps' files here")
    ap.add_argument("--smoke-test", action="store_true",
                    help="4 settings x 2 seeds of 40 steps, fused in pairs, 2 confirm seeds")
    a = ap.parse_args(argv)
    if a.smoke_test:  # fused in pairs: auto would pick 1 for 4 settings on 2 CPUs
        a.num_samples, a.seeds, a.confirm = 4, 2, 2
        a.fuse = "2" if a.fuse == "auto" else a.fuse
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    results = {}
    for fuse in ("1", a.fuse):
        with tempfile.TemporaryDirectory() as d:
            root = a.keep / f"fuse-{fuse}" if a.keep else Path(d)
            root.mkdir(parents=True, exist_ok=True)
            results[fuse] = one_arm(root, fuse, a)
    print(machine_header())
    steps = SMOKE_FIXED["steps"] if a.smoke_test else load_space("default").fixed["steps"]
    print(f"default space (ring8, {steps} steps), {a.num_samples} settings x {a.seeds} seeds, "
          f"TPE (sampler seed {a.sampler_seed}) with early stopping; "
          f"{results['1']['at_once']} trials at once"
          + (f", {a.gpus_per_trial:g} GPU per trial" if a.gpus_per_trial else " on CPUs"))
    print("| arm | settings per trial | wall s | trainer s | efficiency | finished "
          "| best objective | confirmed (top setting of `stable`) | best params |")
    print("|---|---|---|---|---|---|---|---|---|")
    for fuse, r in results.items():
        conf = r.get("confirmed")
        conf_text = (f"{conf['successes']}/{conf['seeds']} = {conf['rate']:.2f} "
                     f"[{conf['wilson'][0]:.2f}, {conf['wilson'][1]:.2f}]" if conf else "-")
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in sorted(r["best_params"].items()))
        print(f"| --fuse {fuse} | {r['fuse']} | {r['wall']:.0f} | {r['busy']:.0f} | "
              f"{r['efficiency']:.2f} | {r['finished']}/{r['settings']} | "
              f"{r['best_objective']:.4f} | {conf_text} | {params} |")
    fused = results[a.fuse]
    print(f"wall(--fuse 1) / wall(--fuse {a.fuse}) = "
          f"{results['1']['wall'] / fused['wall']:.2f}x")
    base, other = results["1"].get("confirmed"), fused.get("confirmed")
    if base and other:
        inside = base["wilson"][0] <= other["rate"] <= base["wilson"][1]
        print(f"fused top setting's confirmed rate {other['rate']:.2f} is "
              f"{'inside' if inside else 'OUTSIDE'} the unfused one's Wilson interval "
              f"[{base['wilson'][0]:.2f}, {base['wilson'][1]:.2f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
