"""How near `trainers.memory.estimate` is to what a population really takes.

Each config trains two steps and evaluates once in a fresh process; the measured figure is
the process's peak RSS after that minus its RSS before the members were built (so torch,
imports and the Python heap are left out, as the estimate leaves them to PROCESS_BYTES).
Image configs include their dataset and the evaluation classifier in the measurement, which
the estimate does not count: expect them higher.

    python -m benchmarks.memory_estimate            # the table in docs/results.md section 4
    python -m benchmarks.memory_estimate --smoke-test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CONFIGS = [  # (values, members)
    ({"hidden": 1024, "depth": 4}, 1),
    ({"hidden": 1024, "depth": 4}, 8),
    ({"hidden": 2048, "depth": 6}, 2),
    ({"hidden": 128, "depth": 3, "batch_size": 4096, "eval_samples": 20000}, 4),
    ({"dataset": "stacked-digits", "hidden": 64}, 4),
]
SMOKE = [({"hidden": 1024, "depth": 2}, 2)]

_CHILD = """
import json, resource, sys
import torch
from trainers.config import make_config
from trainers.data import dataset_shape
from trainers.members import make_members
from trainers.memory import estimate
torch.set_num_threads(1)
values, k = json.loads(sys.argv[1]), int(sys.argv[2])
cfg = make_config({**values, "steps": 2, "eval_every": 2})
est = estimate(cfg, dataset_shape(cfg), k)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
members = make_members([cfg.replace(seed=j) for j in range(k)])
members.train_until(2)
members.evaluate()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"estimate": est.total, "measured": peak - before}))
"""


def measure(values: dict, members: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(values), str(members)],
                         capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke-test", action="store_true", help="one tiny config")
    args = ap.parse_args()
    print("| config | members | estimate MiB | measured MiB | measured / estimate |")
    print("|---|---|---|---|---|")
    for values, k in SMOKE if args.smoke_test else CONFIGS:
        m = measure(values, k)
        est, got = m["estimate"] / 2**20, m["measured"] / 2**20
        desc = ", ".join(f"{a}={b}" for a, b in values.items())
        print(f"| {desc} | {k} | {est:,.0f} | {got:,.0f} | {got / est:.2f} |", flush=True)


if __name__ == "__main__":
    main()
