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
blocks so that memory stays O(block x N), and compared squared, from one matrix product per
block.
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
# Features of more dimensions than this are compared in float32: their distances are of the
# size of their norms, so float32's relative error (1e-7) does not move a ball's edge, and
# the evaluation of 10,000 classifier features costs a third less. Low-dimensional points
# stay float64: ring8's neighbours lie 0.001 apart at distance 1 from the origin, where a
# float32 |x|^2 + |y|^2 - 2 x.y would lose 6% of a squared distance.
_FLOAT32_ABOVE = 16


@dataclass(frozen=True)
class Manifold:
    """A sample set and the radius of each sample's k-NN ball within it."""

    features: Tensor  # (N, D), float64 (float32 above _FLOAT32_ABOVE dimensions)
    radii: Tensor  # (N,)


def manifold(x: np.ndarray | Tensor, k: int = K_NEIGHBOURS) -> Manifold | None:
    """The first MAX_SAMPLES rows of x, flattened to vectors, with their k-NN radii; None for
    k rows or fewer, which have no k-th neighbour (a `sweeper eval` of a 3-sample file)."""
    f = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    f = f.detach().reshape(len(f), -1)[:MAX_SAMPLES]
    f = f.to("cpu", torch.float32 if f.shape[1] > _FLOAT32_ABOVE else torch.float64)
    if len(f) <= k:
        return None
    # k + 1: each row's nearest "neighbour" is itself, at distance 0.
    radii = torch.cat([_sq_dists(block, f).topk(k + 1, dim=1, largest=False).values[:, -1]
                       for block in f.split(_BLOCK)]).sqrt_()
    return Manifold(f, radii)


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances (m, n) of the rows of a and b, one matrix product."""
    return (a.square().sum(1)[:, None] + b.square().sum(1)[None, :]
            - 2.0 * a @ b.T).clamp_(min=0.0)


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
    dtype = torch.promote_types(r.features.dtype, f.features.dtype)
    real = r.features.to(dtype)
    real_r2 = r.radii.to(dtype).square()[None, :]
    in_real_ball = 0.0  # generated samples inside at least one real ball
    balls_holding = 0.0  # (generated sample, real ball) pairs with the sample inside the ball
    real_in_fake_ball = torch.zeros(len(real), dtype=torch.bool)
    nearest_fake = torch.full((len(real),), float("inf"), dtype=dtype)
    for y, y_radii in zip(f.features.to(dtype).split(_BLOCK), f.radii.to(dtype).split(_BLOCK),
                          strict=True):
        d2 = _sq_dists(y, real)  # (block, N), compared squared: no square roots
        inside = d2 <= real_r2
        in_real_ball += float(inside.any(1).sum())
        balls_holding += float(inside.sum())
        real_in_fake_ball |= (d2 <= y_radii.square()[:, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, d2.min(0).values)
    m = len(f.features)
    return {
        names.PRECISION: in_real_ball / m,
        names.RECALL: float(real_in_fake_ball.double().mean()),
        names.DENSITY: balls_holding / (k * m),
        names.COVERAGE: float((nearest_fake <= real_r2[0]).double().mean()),
    }


def expected_coverage(n_real: int, n_fake: int, k: int = K_NEIGHBOURS) -> float:
    """E[coverage] when both sets come from one distribution (Naeem et al. 2020, sec. 4):
    1 - prod_{i=1..k} (N - i) / (M + N - i)."""
    q = 1.0
    for i in range(1, k + 1):
        q *= (n_real - i) / (n_fake + n_real - i)
    return 1.0 - q
