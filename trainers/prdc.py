"""Precision, recall, density and coverage: mode coverage for data without labelled modes.

Each real sample x_i gets a ball B_i of radius NND_k(x_i), the distance to its k-th nearest
other real sample; each generated sample y_j likewise a ball of radius NND_k(y_j) among the
generated samples. With N real and M generated feature vectors:

  precision = 1/M  sum_j [y_j lies in some real ball]            (Kynkaanniemi et al. 2019,
  recall    = 1/N  sum_i [x_i lies in some generated ball]         arXiv 1904.06991)
  density   = 1/(kM) sum_j #{i : y_j in B_i}                       (Naeem et al. 2020,
  coverage  = 1/N  sum_i [B_i holds at least one y_j]               arXiv 2002.09797)

Precision and density ask "are the samples realistic?", recall and coverage "is all of the
data represented?": a generator that drops modes keeps precision and loses recall and
coverage. For M = N samples of the real distribution itself, precision and recall tend to 1,
density has expectation 1, and coverage has expectation 1 - C(N-1, k) / C(M+N-1, k), which
is about 1 - 2^-k (Naeem et al., sec. 4); k = 5, as both papers recommend, gives 0.969.

Both sides are cut to their first `MAX_SAMPLES` rows, the 10,000 of Naeem et al.: every value
depends on N (balls shrink as N grows), so sets are compared at equal N (logged as fid_n for
FID), and the cost stays bounded on the 1,000-mode stacked sets. Distances are Euclidean, in
whatever feature space the caller passes (see the dataset that calls it), computed in row
blocks so that memory stays O(block x N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from trainers import names

K_NEIGHBOURS = 5
MAX_SAMPLES = 10_000
_BLOCK = 2048  # rows of a distance block: 2048 x 10,000 float64 is 160 MB at most


@dataclass(frozen=True)
class Manifold:
    """A sample set and the radius of each sample's k-NN ball within it."""

    features: Tensor  # (N, D) float64
    radii: Tensor  # (N,)


def manifold(x: np.ndarray | Tensor, k: int = K_NEIGHBOURS) -> Manifold | None:
    """The first MAX_SAMPLES rows of x, flattened to vectors, with their k-NN radii; None for
    k rows or fewer, which have no k-th neighbour (a `sweeper eval` of a 3-sample file)."""
    f = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    f = f.detach().reshape(len(f), -1)[:MAX_SAMPLES].to("cpu", torch.float64)
    if len(f) <= k:
        return None
    # k + 1: each row's nearest "neighbour" is itself, at distance 0.
    radii = torch.cat([torch.cdist(block, f).topk(k + 1, dim=1, largest=False).values[:, -1]
                       for block in f.split(_BLOCK)])
    return Manifold(f, radii)


def prdc(real: Manifold | np.ndarray | Tensor | None, fake: Manifold | np.ndarray | Tensor,
         k: int = K_NEIGHBOURS) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` against `real` (see the module doc),
    or {} when either set has k samples or fewer.

    `real` may be a cached `Manifold` (its radii cost an N x N pass, the same every evaluation).
    """
    r = real if isinstance(real, Manifold) or real is None else manifold(real, k)
    f = fake if isinstance(fake, Manifold) else manifold(fake, k)
    if r is None or f is None:
        return {}
    if r.features.shape[1] != f.features.shape[1]:
        raise ValueError(f"real and generated features differ in size: "
                         f"{r.features.shape[1]} and {f.features.shape[1]}")
    in_real_ball = 0.0  # generated samples inside at least one real ball
    balls_holding = 0.0  # (generated sample, real ball) pairs with the sample inside the ball
    real_in_fake_ball = torch.zeros(len(r.features), dtype=torch.bool)
    nearest_fake = torch.full((len(r.features),), float("inf"), dtype=torch.float64)
    for y, y_radii in zip(f.features.split(_BLOCK), f.radii.split(_BLOCK), strict=True):
        d = torch.cdist(y, r.features)  # (block, N)
        inside = d <= r.radii[None, :]
        in_real_ball += float(inside.any(1).sum())
        balls_holding += float(inside.sum())
        real_in_fake_ball |= (d <= y_radii[:, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    m = len(f.features)
    return {
        names.PRECISION: in_real_ball / m,
        names.RECALL: float(real_in_fake_ball.double().mean()),
        names.DENSITY: balls_holding / (k * m),
        names.COVERAGE: float((nearest_fake <= r.radii).double().mean()),
    }


def expected_coverage(n_real: int, n_fake: int, k: int = K_NEIGHBOURS) -> float:
    """E[coverage] when both sets come from one distribution (Naeem et al. 2020, sec. 4):
    1 - prod_{i=1..k} (N - i) / (M + N - i)."""
    q = 1.0
    for i in range(1, k + 1):
        q *= (n_real - i) / (n_fake + n_real - i)
    return 1.0 - q
