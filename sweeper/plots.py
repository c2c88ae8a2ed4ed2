"""Figures of generated samples, chosen by the dataset's kind (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # headless: trials and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def points_figure(data, samples: np.ndarray, title: str = "") -> Figure:
    """Scatter of 2D samples over the mixture's mode centres, with 3-sigma HQ circles."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    x = np.asarray(samples, dtype=np.float64)
    x = x[np.isfinite(x).all(1)]
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


# Dataset kind -> figure builder. Image datasets register theirs here ("image").
SAMPLE_FIGURES: dict[str, Callable[..., Figure]] = {"points": points_figure}


def sample_figure(data, samples: np.ndarray, title: str = "") -> Figure:
    """The figure a user looks at to see collapse at a glance, for any dataset kind."""
    return SAMPLE_FIGURES[data.kind](data, samples, title)
