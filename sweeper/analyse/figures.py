"""Figures of generated samples, chosen by the dataset's kind (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # headless: trials and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def points_figure(data, samples: np.ndarray, title: str = "") -> Figure:
    """Scatter of 2D samples over the mixture's mode centres, with 3-sigma HQ circles; for
    points without known modes (`npy:`), over real samples, first two coordinates."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    x = np.asarray(samples, dtype=np.float64)
    x = x[np.isfinite(x).all(1)]
    if not hasattr(data, "centres_np"):
        real = data.data[:len(x)].double().cpu().numpy()
        ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.35, color="tab:grey", label="real")
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.35, color="tab:blue", label="generated")
        lo, hi = real[:, :2].min(0), real[:, :2].max(0)
        pad = 0.1 * (hi - lo).max() + 1e-6
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7)
        ax.set_title(title + ("" if real.shape[1] == 2 else " (first 2 coordinates)"), fontsize=9)
        fig.tight_layout()
        return fig
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.35, color="tab:blue", label="generated")
    c = data.centres_np
    ax.scatter(c[:, 0], c[:, 1], s=30, marker="x", color="tab:red", label="mode centres")
    for cx, cy in c:
        ax.add_patch(plt.Circle((cx, cy), 3 * data.sigma, fill=False, lw=0.6, color="tab:red"))
    pad = 3 * data.sigma + 0.1 * np.ptp(c).max()
    ax.set_xlim(c[:, 0].min() - pad, c[:, 0].max() + pad)
    ax.set_ylim(c[:, 1].min() - pad, c[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def image_figure(data, samples: np.ndarray, title: str = "", max_images: int = 64) -> Figure:
    """The first `max_images` samples as one grid (torchvision's make_grid), [-1, 1] -> [0, 1].

    Grey images are drawn grey; stacked digits show their three digits as R, G and B.
    """
    import torch
    from torchvision.utils import make_grid

    x = torch.as_tensor(np.asarray(samples, dtype=np.float32)[:max_images])
    x = ((torch.nan_to_num(x, nan=-1.0) + 1) / 2).clamp(0, 1)
    nrow = max(1, int(np.ceil(np.sqrt(len(x)))))
    grid = make_grid(x, nrow=nrow, padding=1, pad_value=1.0)  # (3, H', W'), grey repeated
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# Dataset kind -> figure builder.
SAMPLE_FIGURES: dict[str, Callable[..., Figure]] = {"points": points_figure,
                                                    "image": image_figure}


def sample_figure(data, samples: np.ndarray, title: str = "") -> Figure:
    """The figure a user looks at to see collapse at a glance, for any dataset kind."""
    return SAMPLE_FIGURES[data.kind](data, samples, title)
