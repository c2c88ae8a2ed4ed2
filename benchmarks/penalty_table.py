"""Which Lipschitz penalty is stable where: a table from penalty sweeps.

Each input is `sweeper stable --experiment NAME --json` of a sweep of the `penalties` or
`grid25-penalties` space. Settings are grouped by dataset, loss and penalty; a setting is
*stable* when every one of its seeds succeeded under the sweep's quality rule.

    sweeper run --space penalties --experiment pen-ring8 --num-samples 24 --seeds 3 \\
        --search random --no-early-stop --sampler-seed 0
    sweeper stable --experiment pen-ring8 --json > ring8.json
    python -m benchmarks.penalty_table ring8.json grid25.json
    python -m benchmarks.penalty_table --smoke-test     # a tiny sweep end to end (~1 min)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any


def rows(stable_json: dict[str, Any]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(dataset, loss, penalty) -> the settings of that group, from `sweeper stable --json`."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in stable_json["ranked"] + stable_json["flagged"]:
        p = s["params"]
        groups[(p["dataset"], p["loss"], p.get("penalty", "none"))].append(s)
    return groups


def table(inputs: list[dict[str, Any]]) -> str:
    out = ["| dataset | loss | penalty | settings | stable (all seeds succeed) | seeds "
           "succeeded | best stable: HQ, weight | median HQ | most modes held (seed mean) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for doc in inputs:
        for (data, loss, pen), group in sorted(rows(doc).items()):
            stable = [s for s in group if s["n_seeds"] and s["successes"] == s["n_seeds"]]
            ok = sum(s["successes"] for s in group)
            n = sum(s["n_seeds"] for s in group)
            best = max(stable, key=lambda s: s["hq_fraction_mean"], default=None)
            best_cell = (f"{best['hq_fraction_mean']:.2f}, {best['params']['penalty_weight']:.3g}"
                         if best else "-")
            hqs = sorted(s["hq_fraction_mean"] for s in group)
            out.append(f"| {data} | {loss} | {pen} | {len(group)} | {len(stable)} | {ok}/{n} | "
                       f"{best_cell} | {hqs[len(hqs) // 2]:.2f} | "
                       f"{max(s['modes_held_mean'] for s in group):.1f} |")
    return "\n".join(out)


def _smoke() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as d:
        uri = f"sqlite:///{d}/m.db"
        sweeper = str(Path(sys.executable).with_name("sweeper"))
        subprocess.run([sweeper, "run", "--space", "penalties", "--smoke-test", "--experiment",
                        "pen-smoke", "--tracking-uri", uri, "--sweep-dir", f"{d}/sweeps"],
                       check=True, cwd=d, stdout=subprocess.DEVNULL)
        got = subprocess.run([sweeper, "stable", "--experiment", "pen-smoke", "--json",
                              "--tracking-uri", uri, "--min-seeds", "1"], check=True, cwd=d,
                             capture_output=True, text=True)
        return [json.loads(got.stdout)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="*", help="`sweeper stable --json` outputs")
    ap.add_argument("--smoke-test", action="store_true", help="a tiny sweep end to end")
    args = ap.parse_args()
    if not args.inputs and not args.smoke_test:
        ap.error("give `sweeper stable --json` files, or --smoke-test")
    docs = (_smoke() if args.smoke_test
            else [json.loads(Path(p).read_text()) for p in args.inputs])
    print("Protocol: each setting trained on the sweep's seeds (a row's `seeds succeeded`), "
          "judged by the sweep's quality rule; budget and networks as in the space file.\n")
    print(table(docs))


if __name__ == "__main__":
    main()
