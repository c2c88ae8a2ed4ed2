"""Sample-quality metrics that need no critic: mode coverage and the Frechet distance.

All functions take numpy arrays and return plain floats, so they serve the trainer, the
`sweeper eval` command and the tests alike.
"""

from __future__ import annotations

import math

import numpy as np

from trainers import names


def mode_coverage(samples: np.ndarray, centres: np.ndarray, sigma: float) -> dict[str, float]:
    """PacGAN's mode metrics for a mixture of isotropic Gaussians (arXiv 1712.04086).

    A sample is high quality (HQ) when it lies within 3 sigma of its nearest centre; a mode is
    captured when it is the nearest centre of at least one HQ sample; the reverse KL is
    KL(p_hat || uniform) over the mode histogram of the HQ samples. With no HQ sample at all
    the KL is log K, its worst case, rather than undefined.
    """
    counts = mode_counts(samples, centres, sigma)
    k = len(counts)
    return histogram_metrics(counts, len(samples), np.full(k, 1.0 / k))


def mode_counts(samples: np.ndarray, centres: np.ndarray, sigma: float) -> np.ndarray:
    """HQ samples per centre: samples within 3 sigma of their nearest centre, by that centre."""
    samples = np.asarray(samples, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    d2 = ((samples[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    nearest = d2.argmin(1)
    hq = np.sqrt(d2[np.arange(len(samples)), nearest]) <= 3.0 * sigma
    return np.bincount(nearest[hq], minlength=len(centres)).astype(np.float64)


def histogram_metrics(counts: np.ndarray, n_samples: int,
                      reference: np.ndarray) -> dict[str, float]:
    """Modes covered, K, HQ fraction and mode KL from an HQ mode histogram of n_samples."""
    counts = np.asarray(counts, dtype=np.float64)
    return {
        names.MODES_COVERED: float((counts > 0).sum()),
        names.NUM_MODES: float(len(counts)),
        names.HQ_FRACTION: float(counts.sum() / n_samples) if n_samples else 0.0,
        names.MODE_KL: kl_to_reference(counts, reference),
    }


def kl_to_reference(counts: np.ndarray, reference: np.ndarray) -> float:
    """KL(p_hat || reference) for a histogram of counts; log(1/min ref) when counts are empty.

    Empty modes contribute 0 (0 log 0 = 0). With no counts at all the estimate is undefined; we
    return the worst case over single-mode histograms, -log(min reference), which is log K for
    a uniform reference.
    """
    counts = np.asarray(counts, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return float(-math.log(reference.min()))
    p = counts / total
    mask = p > 0
    return float((p[mask] * np.log(p[mask] / reference[mask])).sum())


def gaussian_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of the rows of x, in float64."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray,
                     cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^{1/2}), computed stably.

    Tr((C1 C2)^{1/2}) equals Tr((S C2 S)^{1/2}) with S = C1^{1/2}; S C2 S is symmetric PSD, so
    its square root comes from `eigh` with tiny negative eigenvalues (round-off) clipped to 0.
    This avoids `scipy.linalg.sqrtm` on a non-symmetric product, which can return complex
    values or NaN for near-singular covariances.
    """
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    s = _psd_sqrt(cov1)
    middle = s @ np.asarray(cov2, np.float64) @ s
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    value = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt
    return float(max(value, 0.0))


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64)
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two sets of feature vectors (rows)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
