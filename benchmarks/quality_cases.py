"""The success rule and the quality score on closed-form sample sets, old rule beside new.

Each case is N points drawn with a fixed seed, saved as .npy and scored exactly as
`sweeper eval --dataset D --samples F.npy --json` scores it (`sweeper.cli.train.evaluate_file`),
once under the default success rule and once under the rule gan-sweeper used before sample
quality counted (a mode is covered by one HQ sample; any HQ fraction passes).

    python -m benchmarks.quality_cases            # N = 2,500 (PacGAN's protocol)
    python -m benchmarks.quality_cases --smoke-test
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sweeper.cli.train import evaluate_file
from trainers import names
from trainers.data import grid_centres, ring_centres
from trainers.quality import DEFAULT_RULE, LEGACY_RULE

SEED = 0


def mixture(centres: np.ndarray, sigma: float, keep: int | None = None) -> Callable:
    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        idx = rng.integers(0, keep or len(centres), n)
        return centres[idx] + sigma * rng.standard_normal((n, 2))
    return draw


def uniform_ring(n: int, rng: np.random.Generator) -> np.ndarray:
    theta = rng.uniform(0, 2 * math.pi, n)
    return np.stack([np.cos(theta), np.sin(theta)], 1)


def uniform_square(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-5, 5, (n, 2))


RING, GRID = ring_centres(8), grid_centres()
CASES = [
    ("ring8", "the true mixture (sigma 0.01)", mixture(RING, 0.01)),
    ("ring8", "the 8 modes at sigma x 2", mixture(RING, 0.02)),
    ("ring8", "the 8 modes at sigma x 5", mixture(RING, 0.05)),
    ("ring8", "uniform on the unit circle (no modes)", uniform_ring),
    ("ring8", "7 of the 8 modes", mixture(RING, 0.01, keep=7)),
    ("ring8", "one mode", mixture(RING, 0.01, keep=1)),
    ("grid25", "the true mixture (sigma 0.05)", mixture(GRID, 0.05)),
    ("grid25", "uniform over [-5, 5]^2", uniform_square),
]


def verdict(m: dict[str, float]) -> str:
    return "success" if m[names.SEED_SUCCESS] >= 1 else "fail"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2500, help="samples per case")
    ap.add_argument("--smoke-test", action="store_true", help="N = 1,000")
    args = ap.parse_args(argv)
    n = 1000 if args.smoke_test else args.n
    lines = [f"Protocol: N = {n} points per case (numpy seed {SEED}), scored by `sweeper eval` "
             f"against {n} real samples; FID on raw 2D coordinates.",
             f"New rule (default): {DEFAULT_RULE.describe()}.",
             f"Old rule: {LEGACY_RULE.describe()}.", "",
             "| dataset | samples | modes covered | modes held | HQ | seed_score | mode KL | FID "
             "| old verdict | new verdict |", "|---" * 10 + "|"]
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, label, draw in CASES:
            path = Path(tmp) / "x.npy"
            np.save(path, draw(n, np.random.default_rng(SEED)).astype(np.float32))
            new = evaluate_file(path, {"dataset": dataset}, DEFAULT_RULE)
            old = evaluate_file(path, {"dataset": dataset}, LEGACY_RULE)
            k = int(new[names.NUM_MODES])
            lines.append(
                f"| {dataset} | {label} | {new[names.MODES_COVERED]:.0f}/{k} | "
                f"{new[names.MODES_HELD]:.0f}/{k} | {new[names.HQ_FRACTION]:.3f} | "
                f"{new[names.SEED_SCORE]:.3f} | {new[names.MODE_KL]:.3f} | "
                f"{new[names.FID]:.2g} | {verdict(old)} | {verdict(new)} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
