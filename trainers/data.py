"""Dataset registry. Every dataset is an endless sampler with its own sample-quality metrics.

A dataset object offers:
  kind           "points" (2D) or "image"; picks the model family in `models.py`
  shape          the shape of one sample
  num_modes      K, the number of modes the metrics count
  sample(n, g)   n real samples on the trial's device, drawn with torch.Generator g
  noise_dims     (uniforms, normals) one training sample is made from
  from_noise(u, z)  real samples [..., *shape] from uniforms [..., u] and normals [..., z]:
                 how training draws its real batches for all members in a few ops, from
                 the counter-based streams of `trainers.rng`
  evaluate(x, rule)  dict of data-side metrics for generated samples x (names in `names.py`),
                 seed_success judged by the SuccessRule `rule` (trainers/quality.py)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from trainers import images, metrics, names, prdc, user_data
from trainers.errors import ConfigError
from trainers.quality import DEFAULT_RULE, SuccessRule, quality_metrics
from trainers.seeds import REAL_EVAL_SEED

if TYPE_CHECKING:
    from trainers.config import TrialConfig

# The real HQ fraction of an isotropic 2D Gaussian mode: P(|x - mu| <= 3 sigma) for a
# Rayleigh radius, 1 - exp(-9/2) = 0.98889 (nearest-centre ties are negligible: the closest
# centres of ring8 and grid25 lie 76 and 40 sigma apart).
REAL_HQ_2D = 1.0 - math.exp(-4.5)


class Dataset(Protocol):
    kind: str
    shape: tuple[int, ...]
    num_modes: int

    noise_dims: tuple[int, int]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor: ...

    def from_noise(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor: ...

    def evaluate(self, fake: torch.Tensor,
                 rule: SuccessRule = DEFAULT_RULE) -> dict[str, float]: ...


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    doc: str
    build: Callable[[TrialConfig, torch.device], Dataset]
    shape: tuple[int, ...] = (2,)  # of one sample, known without building the dataset
    labelled: bool = True  # has modes the metrics count; else scored by coverage (quality.py)

    @property
    def kind(self) -> str:
        return "points" if len(self.shape) == 1 else "image"


class GaussianMixture2D:
    """Isotropic Gaussians in the plane with equal weights (PacGAN's ring8 and grid25)."""

    kind = "points"
    shape = (2,)
    noise_dims = (1, 2)  # the mode (one uniform), the offset from its centre (two normals)

    def __init__(self, centres: np.ndarray, sigma: float, device: torch.device,
                 eval_samples: int) -> None:
        self.centres_np = np.asarray(centres, dtype=np.float64)
        self.sigma = float(sigma)
        self.num_modes = len(self.centres_np)
        self.device = device
        self.centres = torch.as_tensor(self.centres_np, dtype=torch.float32, device=device)
        g = torch.Generator(device=device).manual_seed(REAL_EVAL_SEED)
        self.real_eval = self.sample(eval_samples, g).double().cpu().numpy()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(self.num_modes, (n,), generator=generator, device=self.device)
        noise = torch.randn(n, 2, generator=generator, device=self.device)
        return self.centres[idx] + self.sigma * noise

    def from_noise(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        idx = (u[..., 0] * self.num_modes).long().clamp_(max=self.num_modes - 1)
        return self.centres[idx] + self.sigma * z

    def evaluate(self, fake: torch.Tensor,
                 rule: SuccessRule = DEFAULT_RULE) -> dict[str, float]:
        x = fake.detach().double().cpu().numpy()
        counts = metrics.mode_counts(x, self.centres_np, self.sigma)
        out = quality_metrics(counts, len(x), np.full(self.num_modes, 1.0 / self.num_modes),
                              REAL_HQ_2D, rule)
        out[names.FID] = metrics.fid(self.real_eval, x)
        out[names.FID_N] = float(len(x))
        out.update(prdc.prdc(self.real_manifold, x))  # on the raw coordinates
        return out

    @functools.cached_property
    def real_manifold(self) -> prdc.Manifold | None:
        return prdc.manifold(self.real_eval)


def ring_centres(k: int = 8, radius: float = 1.0) -> np.ndarray:
    """k centres at angles 2*pi*i/k, i = 0..k-1.

    Not `linspace(0, 2*pi, k)`: that repeats the first angle as the last and yields only k-1
    distinct centres, a bug that circulates in GAN toy code.
    """
    angles = 2 * math.pi * np.arange(k) / k
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_centres(values: tuple[float, ...] = (-4, -2, 0, 2, 4)) -> np.ndarray:
    return np.array([(x, y) for x in values for y in values], dtype=np.float64)


def _ring8(cfg: TrialConfig, device: torch.device) -> Dataset:
    s = cfg.dataset_scale
    return GaussianMixture2D(ring_centres(8, 1.0 * s), 0.01 * s, device, cfg.eval_samples)


def _grid25(cfg: TrialConfig, device: torch.device) -> Dataset:
    s = cfg.dataset_scale
    return GaussianMixture2D(grid_centres() * s, 0.05 * s, device, cfg.eval_samples)


DATASETS: dict[str, DatasetSpec] = {
    "ring8": DatasetSpec("ring8", "8 Gaussians on the unit circle, sigma 0.01 (PacGAN).", _ring8),
    "grid25": DatasetSpec("grid25", "25 Gaussians on {-4,-2,0,2,4}^2, sigma 0.05 (PacGAN).",
                          _grid25),
    # Image datasets (trainers/images.py); the MNIST family reads --data-root.
    "digits": DatasetSpec("digits", "scikit-learn's 8x8 digits, 1,797 images, 10 classes "
                          "(bundled, no download).", images.build_digits, (1, 8, 8)),
    "stacked-digits": DatasetSpec("stacked-digits", "3 independent digits as channels, 3x8x8, "
                                  "1,000 modes (embedded Stacked MNIST).",
                                  partial(images.build_digits, channels=3), (3, 8, 8)),
    "mnist": DatasetSpec("mnist", "MNIST 28x28, 60,000 training images (torchvision).",
                         partial(images.build_torchvision, cls_name="MNIST", key="mnist"),
                         (1, 28, 28)),
    "fashion-mnist": DatasetSpec("fashion-mnist", "Fashion-MNIST 28x28, 60,000 training "
                                 "images (torchvision).",
                                 partial(images.build_torchvision, cls_name="FashionMNIST",
                                         key="fashion-mnist"), (1, 28, 28)),
    # No labelled modes (trainers/user_data.py): scored by FID/KID and precision/recall/
    # density/coverage; `folder:PATH` and `npy:PATH` name the user's own files.
    "cifar10": DatasetSpec("cifar10", "CIFAR-10 32x32 RGB, 50,000 training images "
                           "(torchvision's python format under --data-root; no labelled "
                           "modes).", user_data.build_cifar10, (3, 32, 32), labelled=False),
    "stacked-mnist": DatasetSpec("stacked-mnist", "3 independent MNIST digits as channels, "
                                 "3x28x28, 1,000 modes (VEEGAN/PacGAN).",
                                 partial(images.build_torchvision, cls_name="MNIST",
                                         key="mnist", channels=3), (3, 28, 28)),
}


# The user's own files, named by a prefix and a path (trainers/user_data.py).
USER_DATASETS = {
    "folder:PATH": "a folder of PNG/JPEG images (class sub-folders allowed), resized with "
                   "--image-size S; no labelled modes.",
    "npy:PATH": "a numpy array: N x D points or N x C x H x W images (floats in [-1, 1] or "
                "uint8); no labelled modes.",
}


def check_dataset_name(name: str) -> None:
    """A one-line ConfigError unless `name` is a registered dataset or folder:/npy:PATH."""
    if user_data.is_user_dataset(name):
        user_data.check_user_dataset_name(name)
    elif name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of "
                          f"{', '.join(sorted(DATASETS))}, folder:PATH or npy:PATH")


def dataset_shape(cfg: TrialConfig) -> tuple[int, ...]:
    """One sample's shape, known without loading the data (file headers at most)."""
    if user_data.is_user_dataset(cfg.dataset):
        return user_data.user_dataset_shape(cfg.dataset, cfg.image_size)
    spec = DATASETS[cfg.dataset]
    if cfg.image_size and spec.kind == "image" and cfg.image_size != spec.shape[-1]:
        raise ConfigError(f"dataset {cfg.dataset} has {spec.shape[-1]}x{spec.shape[-2]} images;"
                          " --image-size resizes folder:PATH images only")
    return spec.shape


def has_labelled_modes(name: str) -> bool:
    return not user_data.is_user_dataset(name) and DATASETS[name].labelled


def feature_space(name: str, fid_backend: str = "auto") -> str:
    """In words: the features FID, KID and precision/recall/density/coverage are computed on."""
    if fid_backend == "inception":
        return "Inception-v3 pool features"
    if fid_backend == "pixels":
        return "pixel values pooled to at most 16x16"
    if user_data.is_user_dataset(name) or not DATASETS[name].labelled:
        return "raw coordinates" if name.startswith("npy:") else \
            "raw coordinates (points) or pixel values pooled to at most 16x16 (images)"
    if DATASETS[name].kind == "points":
        return "raw coordinates"
    return "the evaluation classifier's features"


def describe_rule(rule: SuccessRule, dataset: str | None, fid_backend: str = "auto") -> str:
    """The success rule as it applies to `dataset`: modes held and HQ where modes are
    labelled, coverage and precision (and on which features) where they are not."""
    if dataset is None or has_labelled_modes(dataset):
        return rule.describe()
    return f"{rule.describe_unlabelled()}, on {feature_space(dataset, fid_backend)}"


def build_dataset(cfg: TrialConfig, device: torch.device) -> Dataset:
    if user_data.is_user_dataset(cfg.dataset):
        return user_data.build_user_dataset(cfg, device)
    return DATASETS[cfg.dataset].build(cfg, device)
