"""Image datasets (digits, stacked digits, MNIST family) and their classifier-based metrics.

Every set is held in memory as one (N, H, W) tensor in [-1, 1] on the trial's device; training
turns uniforms from the counter-based streams (`trainers.rng`) into indices on that device
(three independent indices per sample for the stacked sets, one per channel), so sampling
costs one gather and no data loader. `sample` draws them with `torch.randint` instead.

Metrics (names in `trainers.names`; the evaluation classifier is `trainers.classifier`):
  modes_covered  classes (stacked: class triples) predicted confidently for >= 1 sample
  hq_fraction    fraction of samples whose label (stacked: all three labels) is confident
  mode_kl        KL(p_hat || p_real) over the confident labels; p_real is the class
                 distribution of the training data (a product over channels when stacked)
  fid, fid_n     Frechet distance between Gaussian fits of real and generated features from
                 the classifier's penultimate layer: a domain "Frechet classifier distance",
                 comparable only between runs scored by the same classifier (its cache key)
                 and at equal N. It is not Inception FID; `fid_backend: inception` gives that.
  kid            unbiased KID (Binkowski et al. 2018, arXiv 1801.01401) on the same features
  precision, recall, density, coverage  k-NN manifold metrics (trainers/prdc.py) on the same
                 features as FID
  classifier_acc the classifier's held-out accuracy, logged so a weak scorer is visible
  modes_held, seed_score, seed_success  the quality score and success rule of
                 `trainers.quality`, against the real set's confident fraction and p_real

FID/KID implementation: computed directly, FID with `trainers.metrics.frechet_distance` and KID
with `kid` below, not with torchmetrics' `FrechetInceptionDistance`/`KernelInceptionDistance`.
torchmetrics does accept a custom `feature=` module and, on these features, agrees with the
direct computation up to its float32 round-off: FID within 2e-5 relative; KID, with its one
subset set to the whole set, within 1e-3 absolute on kernel values of ~1e4
(`benchmarks/digits_budget.py --compare-torchmetrics` re-checks both). It was still not chosen
because
  1. its KID draws random subsets from torch's *global* RNG: the value varies from call to
     call, the caller's RNG stream shifts, and it needs subset_size <= N;
  2. its FID takes the trace term from `eigvals` of the non-symmetric product C1 C2, which the
     symmetric `eigh` route of `frechet_distance` avoids for the near-singular covariances of
     collapsed generators, and it returns float32;
  3. the 2D datasets already use `frechet_distance`: one function defines "fid" project-wide;
  4. torchmetrics is not otherwise a dependency of this project.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from trainers import classifier as clf
from trainers import inception, metrics, names, prdc
from trainers.errors import ConfigError
from trainers.quality import DEFAULT_RULE, SuccessRule, quality_metrics
from trainers.seeds import REAL_EVAL_SEED

if TYPE_CHECKING:
    from trainers.config import TrialConfig

DATA_ENV = "GAN_SWEEPER_DATA"
# A label counts (for modes_covered, hq_fraction and mode_kl) only when the classifier's
# softmax probability reaches this. On the 8x8 digits, 0.9 keeps 95% of the held-out real
# images (96% of all) and every held-out label that passes is correct; a lower bar lets blurry
# in-between samples count as a mode, a higher one (0.99) rejects 14% of real digits.
CONFIDENCE_THRESHOLD = 0.9
# KID is averaged over disjoint blocks of about this many samples per side: Binkowski et al.
# use subsets of 1,000. Each block's estimate is unbiased, so the mean is too; blocks keep the
# cost linear in N (26,000 samples would need 5 GB kernel matrices unblocked) and need no RNG.
KID_BLOCK = 1000
# The pixels backend pools images to at most this many pixels a side (trainers/user_data.py).
PIXELS_SIDE = 16
# Generated images may overshoot [-1, 1] by rounding only; anything further out means the
# caller passed another scale (e.g. [0, 255]) and every metric would be meaningless.
_RANGE_TOLERANCE = 1e-3


# ---------------------------------------------------------------------------- metrics
def kid(real: np.ndarray, fake: np.ndarray, block: int = KID_BLOCK) -> float:
    """Unbiased squared MMD with the cubic kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al.).

    The rows of `real` and `fake` are split into the same number of contiguous blocks of at
    least `block` rows (one block when there are fewer than 2 * block) and the per-block
    unbiased estimates are averaged. It is 0 in expectation when both sets come from one
    distribution, so small negative values are normal. A block has at most 2 * block rows: when
    one set is much larger than the other (26,000 real features against a file of 10 samples),
    the rest of the larger set is left out rather than building a 26,000^2 kernel matrix.
    """
    real = np.asarray(real, np.float64).reshape(len(real), -1)
    fake = np.asarray(fake, np.float64).reshape(len(fake), -1)
    if min(len(real), len(fake)) < 2:
        raise ValueError("KID needs at least 2 samples per set")
    k = max(1, min(len(real), len(fake)) // block)
    real, fake = (x[:k * min(len(x) // k, 2 * block)] for x in (real, fake))
    d = real.shape[1]
    return float(np.mean([_mmd2_unbiased(r, f, d) for r, f in
                          zip(np.array_split(real, k), np.array_split(fake, k), strict=True)]))


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, d: int) -> float:
    m, n = len(x), len(y)
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


# ---------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class Loaded:
    """One base dataset in memory: (N, H, W) images in [-1, 1], labels, and what the
    evaluation classifier needs (cache key, data digest, labelled train/test split)."""

    images: Tensor
    labels: Tensor
    key: str
    digest: str
    split: Callable[[], clf.Split]
    epochs: int


def load_digits() -> Loaded:
    """scikit-learn's bundled 8x8 digits: 1,797 images of 10 classes, pixel values 0..16."""
    from sklearn.datasets import load_digits as sk_load
    from sklearn.model_selection import train_test_split

    bunch = sk_load()
    raw = torch.as_tensor(bunch.images, dtype=torch.float32)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    images = raw / 8.0 - 1.0

    def split() -> clf.Split:
        # A fixed stratified 80/20 split: the GAN sees all 1,797 images, the classifier's
        # accuracy is measured on the 360 it never trained on.
        tr, te = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0,
                                  stratify=bunch.target)
        tr, te = torch.as_tensor(tr), torch.as_tensor(te)
        return clf.Split(images[tr, None], labels[tr], images[te, None], labels[te])

    # 40 epochs (about 900 steps of 64) reach 99.7% held-out accuracy in ~10 s on one core.
    return Loaded(images, labels, "digits", clf.data_digest(raw, labels), split, epochs=40)


def data_root(cfg: TrialConfig) -> Path:
    root = cfg.data_root or os.environ.get(DATA_ENV, "")
    if not root:
        raise ConfigError(f"dataset {cfg.dataset} reads its files from a data folder: pass "
                          f"--data-root DIR (or set ${DATA_ENV}), and --download to fetch them "
                          "into it")
    return Path(root).expanduser()


def load_torchvision(cfg: TrialConfig, cls_name: str, key: str) -> Loaded:
    """MNIST or FashionMNIST through torchvision, from `data_root(cfg)`/<cls_name>/raw.

    Downloads only when `cfg.download` is true. A file lock in the data folder serialises
    download, unpacking and reading, so parallel trials on one node never fetch or unpack the
    same files at once, nor read half-written ones.
    """
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = data_root(cfg)
    raw = root / cls_name / "raw"
    if cfg.download:
        root.mkdir(parents=True, exist_ok=True)
    elif not root.is_dir():
        raise ConfigError(f"dataset {cfg.dataset}: data folder {root} does not exist; pass "
                          f"--download to fetch {cls_name} into it, or --data-root DIR (or "
                          f"${DATA_ENV}) for a folder that has {cls_name}/raw")

    def read(train: bool) -> tuple[Tensor, Tensor]:
        with _folder_lock(root, cls_name):
            try:
                ds = cls(str(root), train=train, download=cfg.download)
            except (RuntimeError, ValueError, AssertionError, OSError, IndexError,
                    EOFError) as e:  # torchvision's readers raise each of these on bad files
                if cfg.download:
                    raise ConfigError(f"dataset {cfg.dataset}: downloading {cls_name} into "
                                      f"{root} failed ({_first_line(e)}); copy the files to "
                                      f"{raw} instead") from None
                if raw.is_dir() and any(raw.iterdir()):
                    raise ConfigError(f"dataset {cfg.dataset}: the {cls_name} files in {raw} "
                                      f"are damaged or incomplete ({_first_line(e)[:160]}); "
                                      "replace them with the original files") from None
                raise ConfigError(f"dataset {cfg.dataset}: no {cls_name} files in {raw}; "
                                  f"pass --download to fetch them, or --data-root DIR (or "
                                  f"${DATA_ENV}) for a folder that has them") from None
        return ds.data, ds.targets.long()

    data, labels = read(train=True)

    def split() -> clf.Split:
        test_data, test_labels = read(train=False)
        return clf.Split(_to_unit(data)[:, None], labels, _to_unit(test_data)[:, None],
                         test_labels)

    # Two epochs of 60,000 images is ~1,900 steps of 64, twice what reaches 99.7% on the 8x8
    # digits; not measured on MNIST here (no copy on the build machine): its accuracy is logged
    # as classifier_acc with every evaluation.
    return Loaded(_to_unit(data), labels, key, clf.data_digest(data, labels), split, epochs=2)


def _to_unit(u8: Tensor) -> Tensor:
    return u8.float() / 127.5 - 1.0


def _folder_lock(root: Path, cls_name: str) -> contextlib.AbstractContextManager:
    # A read-only data folder cannot hold a lock file, but nobody can download into it either.
    if not os.access(root, os.W_OK):
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(str(root / f".{cls_name}.lock"))


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


# ---------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class _RealSide:
    stats: tuple[np.ndarray, np.ndarray]  # Gaussian fit of the real features
    features: np.ndarray
    manifold: prdc.Manifold | None  # the same features with their k-NN radii
    hq: float  # fraction of real samples labelled confidently (the real HQ fraction)


class ImageDataset:
    """Single-channel images, or `channels` independent images stacked as channels.

    The classifier and the real-side statistics are built on first use (the first evaluation),
    once per dataset object: building a trainer stays cheap, and a trial that never evaluates
    never trains a classifier.
    """

    kind = "image"

    def __init__(self, name: str, source: Loaded, *, channels: int, device: torch.device,
                 eval_samples: int, fid_backend: str = "classifier") -> None:
        self.name = name
        self.source = source
        self.channels = channels
        self.device = device
        self.eval_samples = eval_samples
        self.fid_backend = "classifier" if fid_backend == "auto" else fid_backend
        if self.fid_backend == "inception":
            inception.check_available()
        self.images = source.images.to(device)
        h, w = self.images.shape[-2:]
        self.shape = (channels, int(h), int(w))
        self.num_classes = int(source.labels.max().item()) + 1
        self.num_modes = self.num_classes ** channels
        p1 = np.bincount(source.labels.numpy(), minlength=self.num_classes) / len(source.labels)
        p = np.ones(1)
        for _ in range(channels):  # first channel is the most significant digit of a mode id
            p = np.outer(p, p1).ravel()
        self.p_real = p
        self._place = self.num_classes ** torch.arange(channels - 1, -1, -1, device=device)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        idx = torch.randint(len(self.images), (n, self.channels), generator=generator,
                            device=self.device)
        return self.images[idx]

    @property
    def noise_dims(self) -> tuple[int, int]:
        return (self.channels, 0)  # one uniform picks each channel's image

    def from_noise(self, u: Tensor, z: Tensor) -> Tensor:
        n = len(self.images)
        return self.images[(u * n).long().clamp_(max=n - 1)]

    @functools.cached_property
    def classifier(self) -> clf.DigitClassifier:
        s = self.source
        return clf.load_or_train(s.key, s.digest, s.split, epochs=s.epochs, device=self.device,
                                 num_classes=self.num_classes)

    def classify(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(mode ids, confident mask, classifier features) of (n, C, H, W) images.

        Each channel is labelled on its own, and is confident when its label is a class (not
        "not a digit") with probability >= CONFIDENCE_THRESHOLD. A stacked sample is confident
        when every channel is; its mode id reads the channel labels as the digits of a base-10
        number. Samples that are not confident get mode id -1.
        """
        n, c = x.shape[:2]
        labels, conf, feats = self.classifier.predict(x.reshape(n * c, 1, *x.shape[2:]))
        labels, conf = labels.view(n, c), conf.view(n, c)
        confident = ((labels != self.classifier.reject) & (conf >= CONFIDENCE_THRESHOLD)).all(1)
        modes = torch.where(confident, (labels * self._place).sum(1), -1)
        return modes, confident, feats.view(n, -1)

    def evaluate(self, fake: Tensor, rule: SuccessRule = DEFAULT_RULE) -> dict[str, float]:
        x = self._check(fake)
        modes, confident, feats = self.classify(x)
        counts = torch.bincount(modes[confident], minlength=self.num_modes).cpu().numpy()
        f = self._features(x, feats)
        real = self._real
        return {
            **quality_metrics(counts, len(x), self.p_real, real.hq, rule),
            names.FID: metrics.frechet_distance(*real.stats, *metrics.gaussian_stats(f)),
            names.FID_N: float(len(f)),
            names.KID: kid(real.features, f),
            **prdc.prdc(real.manifold, f),
            names.CLASSIFIER_ACC: self.classifier.test_accuracy,
        }

    @functools.cached_property
    def _real(self) -> _RealSide:
        """Features, their Gaussian fit and the confident (HQ) fraction of `eval_samples` real
        samples drawn with a fixed seed: the reference every evaluation is scored against."""

        g = torch.Generator(device=self.device).manual_seed(REAL_EVAL_SEED)
        real = self.sample(self.eval_samples, g)
        _, confident, feats = self.classify(real)
        f = self._features(real, feats, real=True)
        return _RealSide(metrics.gaussian_stats(f), f, prdc.manifold(f),
                         float(confident.float().mean().item()))

    def _features(self, x: Tensor, classifier_feats: Tensor, *, real: bool = False
                  ) -> np.ndarray:
        if self.fid_backend == "inception":
            return self._inception_features(x, real=real)
        if self.fid_backend == "pixels":
            return pixel_features(x).double().cpu().numpy()
        return classifier_feats.cpu().double().numpy()  # cpu first: MPS has no float64

    def _check(self, fake: Tensor) -> Tensor:
        return check_samples(self.name, self.shape, self.device, fake)

    def _inception_features(self, x: Tensor, *, real: bool = False) -> np.ndarray:
        """Inception pool features; those of the real evaluation set are cached on disk (they
        cost minutes on a CPU and are the same for every trial of the dataset at this N)."""
        if not real:
            return inception.features(x).numpy()
        s = self.source
        return real_inception_features(x, f"{s.key}-{s.digest}-c{self.channels}")


def real_inception_features(x: Tensor, key: str) -> np.ndarray:
    """Inception features of a real evaluation set, cached on disk: they cost minutes on a
    CPU and are the same for every trial of the dataset at this N and on this device type
    (`key` names the data, the file name adds N, the real-set seed and the device)."""
    path = clf.cache_dir() / (f"inception-{key}-n{len(x)}-seed{REAL_EVAL_SEED}-"
                              f"{x.device.type}.npy")
    return cached_array(path, (len(x), inception.FEATURE_DIM),
                        lambda: inception.features(x).numpy())


def check_samples(name: str, shape: tuple[int, ...], device: torch.device, fake: Tensor
                  ) -> Tensor:
    """Generated samples as float32 on `device`, or a one-line ConfigError: the wrong shape,
    NaN or inf, or (images) values outside [-1, 1]."""
    if tuple(fake.shape[1:]) != tuple(shape) or len(fake) < 2:
        raise ConfigError(f"{name} samples must have shape (N >= 2, "
                          f"{', '.join(map(str, shape))}), got {tuple(fake.shape)}")
    x = fake.detach().to(device, torch.float32)
    if not torch.isfinite(x).all():
        raise ConfigError(f"generated {'images' if len(shape) == 3 else 'samples'} contain "
                          "NaN or inf values")
    if len(shape) == 3:
        lo, hi = x.min().item(), x.max().item()
        if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
            raise ConfigError(f"generated images must lie in [-1, 1] (like the data), got "
                              f"values in [{lo:.3g}, {hi:.3g}]")
    return x


def cached_array(path: Path, shape: tuple[int, ...], compute: Callable[[], np.ndarray]
                 ) -> np.ndarray:
    """An array cached in `path` (written atomically under a file lock, read without pickle);
    a file of another shape or with non-finite values is recomputed and replaced."""
    from filelock import FileLock

    def read() -> np.ndarray | None:
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return a if a.shape == shape and np.isfinite(a).all() else None

    if (a := read()) is not None:
        return a
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (a := read()) is not None:  # another trial computed it while we waited
            return a
        a = np.asarray(compute(), dtype=np.float64)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, a)
        os.replace(tmp, path)
    return a


def pixel_features(x: Tensor) -> Tensor:
    """Images average-pooled to at most PIXELS_SIDE pixels a side, flattened."""
    h, w = x.shape[-2:]
    fh, fw = math.ceil(h / PIXELS_SIDE), math.ceil(w / PIXELS_SIDE)
    if fh > 1 or fw > 1:
        x = F.avg_pool2d(x, (fh, fw), ceil_mode=True)
    return x.reshape(len(x), -1)


# ---------------------------------------------------------------------------- registry builders
def build_digits(cfg: TrialConfig, device: torch.device, *, channels: int = 1) -> ImageDataset:
    return ImageDataset(cfg.dataset, load_digits(), channels=channels, device=device,
                        eval_samples=cfg.eval_samples, fid_backend=cfg.fid_backend)


def build_torchvision(cfg: TrialConfig, device: torch.device, *, cls_name: str, key: str,
                      channels: int = 1) -> ImageDataset:
    return ImageDataset(cfg.dataset, load_torchvision(cfg, cls_name, key), channels=channels,
                        device=device, eval_samples=cfg.eval_samples,
                        fid_backend=cfg.fid_backend)
