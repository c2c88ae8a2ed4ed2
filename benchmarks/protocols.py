"""Named training protocols of the mode-coverage tables: the budget and the networks.

The published 2D rows share PacGAN's data, metrics and N = 2,500 with ours, but not the
budget: each source trained its own networks for its own number of steps. A protocol here
names one budget, so that a table says which it used, and a row can be compared with the
published rows trained at the same budget (GDPP's, for its WGAN-GP row).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from trainers.config import make_config
from trainers.data import DATASETS


@dataclass(frozen=True)
class Protocol:
    """What every row of a table trains with; rows differ only in their loss's
    hyperparameters (optimiser, learning rates, n_critic, lambda, ...)."""

    steps: int
    batch_size: int
    hidden: int
    depth: int
    z_dim: int
    activation: str
    init: str
    eval_samples: int = 2500
    source: str = ""

    def values(self) -> dict[str, Any]:
        """The `TrialConfig` fields this protocol sets."""
        out = asdict(self)
        del out["source"]
        return out


PROTOCOLS: dict[str, Protocol] = {
    # Ours since the first tables: small enough that a 10-seed row takes minutes on a CPU.
    "short": Protocol(steps=3000, batch_size=128, hidden=64, depth=3, z_dim=16,
                      activation="relu", init="default",
                      source="gan-sweeper's own short budget"),
    # M-Elfeki/GDPP gdppgan_Synthetic.py, the budget of the WGAN-GP row we compare with.
    "gdpp": Protocol(steps=25_000, batch_size=512, hidden=128, depth=2, z_dim=256,
                     activation="tanh", init="orthogonal",
                     source="GDPP's (M-Elfeki/GDPP, gdppgan_Synthetic.py)"),
}

# The budgets behind the published rows (shared notes, protocols.md), printed with every table.
PUBLISHED_BUDGETS = (
    "| source | networks | batch | steps | rows quoted |",
    "|---|---|---|---|---|",
    "| PacGAN (fjxmlzn/PacGAN, `synthetic_data_experiments/`) | G 4x400 with BN, D 3x200 "
    "maxout | 100 | 400,000 | GAN, PacGAN4 |",
    "| GDPP (M-Elfeki/GDPP, `gdppgan_Synthetic.py`) | 2x128 tanh, z 256, orthogonal init "
    "| 512 | 25,000 | WGAN-GP (GDPP tab. 1) |",
    "| VEEGAN (copies of its notebook) | G 2x128, D 1x128 on (x, z) | 500 | about 100,000 "
    "| GAN, Unrolled GAN, VEEGAN |",
    "| WGAN-GP toy (`gan_toy.py`) | 3x512 ReLU | 256 | 100,000 | plots only |",
)


def resolve(name: str, **overrides: Any) -> dict[str, Any]:
    """The named protocol's config values, with any non-None override applied (and
    checked: an impossible value raises `ConfigError` before anything trains)."""
    values = PROTOCOLS[name].values()
    values.update({k: v for k, v in overrides.items() if v is not None})
    make_config(values)
    return values


def label(name: str, values: dict[str, Any], dataset: str | None = None) -> str:
    """One line for a table header: whose data, metrics and N the table shares, the
    protocol's name, its budget and networks, and whether any of them was changed from the
    named protocol. Image datasets train conv nets of width `hidden` and are not PacGAN's."""
    changed = sorted(k for k, v in PROTOCOLS[name].values().items() if values.get(k) != v)
    note = f"; changed from {name}: {', '.join(changed)}" if changed else ""
    budget = (f"budget: protocol {name} ({PROTOCOLS[name].source}{note}): "
              f"{values['steps']:,} generator steps, batch {values['batch_size']}, ")
    spec = DATASETS.get(dataset or "")
    if spec is None or spec.kind == "points":
        return (f"PacGAN's data, metrics and N; {budget}{values['depth']}x{values['hidden']} "
                f"{values['activation']} MLPs ({values['init']} init) for 2D data, "
                f"z {values['z_dim']}")
    data = IMAGE_DATA.get(dataset, f"data: {spec.doc.rstrip('.')}; no published rows")
    return (f"{data}; N = {values['eval_samples']:,}; {budget}conv nets of width "
            f"{values['hidden']}, z {values['z_dim']}")


# Whose protocol an image table shares, where it is not PacGAN's 2D one.
IMAGE_DATA = {
    "stacked-digits": "Stacked MNIST's metrics and mode count (1,000) on 3 stacked "
                      "scikit-learn 8x8 digits, not MNIST: published Stacked MNIST rows are "
                      "not comparable",
    "stacked-mnist": "Stacked MNIST's data, metrics and mode count (VEEGAN, PacGAN; "
                     "published rows at their own networks and budgets)",
}
