"""Load: many tiny trials on a real 2-node Ray cluster logging to a real MLflow server.

Starts `ray start` head + worker (1 CPU each, token auth) and `mlflow server` on 127.0.0.1,
runs `sweeper run` with N smoke-size trials, samples the driver's RSS while it runs, then
checks MLflow: every trial and seed run present once, with complete params and a final
objective. Everything it started is stopped by PID at the end.

Usage:  python -m benchmarks.load_test [--trials 200] [--smoke-test]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from benchmarks._procs import mlflow_server, ray_cluster, stop_group
from sweeper.track import store, tags
from sweeper.track.metric_keys import metrics_of
from trainers import names
from trainers.config import FIELDS

SPACE = {"fixed": {"dataset": "ring8", "loss": "wgan-gp", "steps": 20, "eval_every": 10,
                   "eval_samples": 200, "hidden": 8, "depth": 1, "batch_size": 32},
         "params": {"gp_lambda": {"log_uniform": [0.1, 100]}, "n_critic": {"int": [1, 3]}}}


def tree_rss(p: psutil.Process) -> tuple[int, int]:
    """(driver RSS, driver + children RSS) in bytes; the children are its Ray client bits."""
    try:
        own = p.memory_info().rss
        kids = sum(c.memory_info().rss for c in p.children(recursive=True))
        return own, own + kids
    except psutil.NoSuchProcess:
        return 0, 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--reuse-actors", action="store_true")
    ap.add_argument("--smoke-test", action="store_true", help="6 trials")
    a = ap.parse_args()
    n = 6 if a.smoke_test else a.trials
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "space.yaml").write_text(yaml.safe_dump(SPACE))
        with mlflow_server(root) as server, ray_cluster(nodes=2, cpus_per_node=1) as cluster:
            cmd = [str(Path(sys.executable).with_name("sweeper")), "run", "--space",
                   "space.yaml", "--experiment", "load", "--num-samples", str(n), "--seeds",
                   "1", "--max-concurrent", "2", "--no-early-stop", "--address",
                   cluster.address, "--tracking-uri", server.uri, "--sweep-dir",
                   str(root / "sweeps")]
            if a.reuse_actors:
                cmd.append("--reuse-actors")
            t0 = time.time()
            proc = subprocess.Popen(cmd, cwd=root, env=cluster.env, stdout=subprocess.DEVNULL,
                                    stderr=(root / "driver.log").open("w"),
                                    start_new_session=True)
            samples: list[tuple[float, int, int]] = []
            driver = psutil.Process(proc.pid)
            try:
                while proc.poll() is None:
                    own, tree = tree_rss(driver)
                    if own:
                        samples.append((time.time() - t0, own, tree))
                    time.sleep(1.0)
            finally:
                stop_group(proc)
            wall = time.time() - t0
            if proc.returncode != 0:
                sys.exit(f"sweep failed: {(root / 'driver.log').read_text()[-3000:]}")
            c = store.client(server.uri)
            exp = c.get_experiment_by_name("load")
            runs = c.search_runs([exp.experiment_id], max_results=5000)
    trials = [r for r in runs if r.data.tags.get(tags.TAG_KIND) == "trial"]
    seeds = [r for r in runs if r.data.tags.get(tags.TAG_KIND) == "seed"]
    keys = [r.data.tags[tags.TAG_KEY] for r in trials + seeds]
    complete = sum(1 for r in trials if names.OBJECTIVE in metrics_of(r)
                   and set(FIELDS) <= set(r.data.params))
    nodes = {r.data.tags.get(tags.TAG_NODE_ID) for r in trials}
    print(f"\n{n} trials (ring8 WGAN-GP, 20 steps, hidden 8) on a 2-node local Ray cluster "
          f"(1 CPU each) + mlflow server on 127.0.0.1")
    print(f"wall {wall:.0f} s = {wall / n:.2f} s per trial with 2 running at once; "
          f"trials on {len(nodes)} nodes")
    print(f"trial runs {len(trials)}/{n}, seed runs {len(seeds)}/{n}, complete (all params + "
          f"final objective) {complete}/{n}, duplicate keys {len(keys) - len(set(keys))}")
    q = [samples[int(i * (len(samples) - 1) / 4)] for i in range(5)] if samples else []
    print("driver RSS (MiB) at 0/25/50/75/100% of the run: "
          + " / ".join(f"{own / 2**20:.0f}" for _, own, _ in q)
          + f"; peak {max(s[1] for s in samples) / 2**20:.0f} MiB"
          + f" (with child processes: peak {max(s[2] for s in samples) / 2**20:.0f} MiB)")
    ok = len(trials) == n and len(seeds) == n and complete == n and len(keys) == len(set(keys))
    print("RESULT:", "all runs present once" if ok else "MISSING OR DUPLICATED RUNS")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
