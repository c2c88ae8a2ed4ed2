"""What a short sweep costs besides training: `sweeper run` timed from the shell.

A sweep of 2 one-seed trials of 20 steps (ring8, one at a time, a new SQLite store each run)
trains for well under a second; everything else is start-up and shut-down: imports, Ray,
MLflow's schema, the trial processes, Tune's bookkeeping, the exit. Each run is timed from
its launch to three points seen from outside:

  first trial   the first trial's progress line ("[1/2] ... at step 20")
  last line     the results table's last line
  exit          the process ending

With `--baseline DIR` (a checkout of an older commit; it runs with this venv, its own code
first on PYTHONPATH) both arms run alternately, on the same machine in the same run, and
the ratios of their median times are printed.

Usage:  python -m benchmarks.startup [--repeats 5] [--baseline DIR] [--smoke-test]
  e.g.  git worktree add /tmp/old 56e3931 && python -m benchmarks.startup --baseline /tmp/old
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"fixed": {"dataset": "ring8", "loss": "wgan-gp", "steps": 20, "eval_every": 10,
                   "eval_samples": 300, "hidden": 16, "depth": 2, "batch_size": 64},
         "params": {"gp_lambda": {"log_uniform": [0.1, 100]}}}
POINTS = ("first trial", "last line", "exit")
# The console script of a checkout: `console` (quick exit) where it has one, else `main`.
_LAUNCH = ("import sys; sys.argv[0] = 'sweeper'; import sweeper.cli as c; "
           "sys.exit((getattr(c, 'console', None) or c.main)())")


def time_run(code_dir: Path, work: Path, trials: int) -> dict[str, float]:
    """Seconds from launch to each of POINTS for one `sweeper run` of `code_dir`'s code."""
    store = work / "mlflow.db"
    store.unlink(missing_ok=True)
    args = ["run", "--space", "space.yaml", "--experiment", "startup", "--sweep-dir",
            str(work / "sweeps"), "--num-samples", str(trials), "--seeds", "1",
            "--max-concurrent", "1", "--sampler-seed", "3", "--no-early-stop", "--tracking-uri",
            f"sqlite:///{store}"]
    env = {**os.environ, "PYTHONPATH": str(code_dir), "PYTHONUNBUFFERED": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    seen: dict[str, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, *args], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: deque[str] = deque(maxlen=20)
    for line in proc.stdout:
        now = time.perf_counter() - t0
        tail.append(line)
        if line.startswith("[1/") and "first trial" not in seen:
            seen["first trial"] = now
        seen["last line"] = now
    proc.wait()
    seen["exit"] = time.perf_counter() - t0
    if proc.returncode != 0 or "first trial" not in seen:
        raise SystemExit(f"sweep of {code_dir} failed (exit {proc.returncode}):\n"
                         + "".join(tail))
    shutil.rmtree(work / "sweeps", ignore_errors=True)
    return seen


def table(arms: dict[str, list[dict[str, float]]]) -> str:
    head = "| code | runs | " + " | ".join(f"{p} s (median)" for p in POINTS) + \
           " | last line -> exit s |"
    lines = [head, "|" + "---|" * (len(POINTS) + 3)]
    for name, runs in arms.items():
        med = [statistics.median(r[p] for r in runs) for p in POINTS]
        teardown = statistics.median(r["exit"] - r["last line"] for r in runs)
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(f"{m:.2f}" for m in med)
                     + f" | {teardown:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs per arm (alternating)")
    ap.add_argument("--trials", type=int, default=2, help="one-seed trials per sweep")
    ap.add_argument("--baseline", type=Path, help="a checkout of older code to compare with")
    ap.add_argument("--smoke-test", action="store_true", help="one 1-trial run per arm")
    a = ap.parse_args(argv)
    if a.smoke_test:
        a.repeats, a.trials = 1, 1
    arms = {"this checkout": ROOT}
    if a.baseline is not None:
        if not (a.baseline / "sweeper" / "cli" / "main.py").is_file():
            print(f"error: --baseline {a.baseline} is not a gan-sweeper checkout; make one "
                  "with `git worktree add DIR COMMIT`", file=sys.stderr)
            return 2
        arms = {"baseline": a.baseline.resolve(), **arms}
    print(f"`sweeper run`: {a.trials} trials x 1 seed x {SPACE['fixed']['steps']} steps "
          f"(ring8, one at a time, new SQLite store), {a.repeats} runs per arm, alternating; "
          f"{os.cpu_count()} CPUs")
    times: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "space.yaml").write_text(yaml.safe_dump(SPACE))
        for _ in range(a.repeats):
            for name, code in arms.items():
                times[name].append(time_run(code, work, a.trials))
    print(table(times))
    if a.baseline is not None:
        for p in POINTS:
            old = statistics.median(r[p] for r in times["baseline"])
            new = statistics.median(r[p] for r in times["this checkout"])
            print(f"{p}: baseline / this checkout = {old / new:.2f}x ({old:.2f} s -> "
                  f"{new:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
