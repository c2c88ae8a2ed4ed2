"""Evaluation classifiers for image datasets: a small CNN per dataset, trained once per machine.

The classifier labels generated digits (mode coverage, high-quality fraction) and its
penultimate layer gives the features behind the domain FID/KID ("Frechet classifier distance",
in the spirit of the "Frechet LeNet distance" used for digits when Inception weights are not
wanted). Those numbers are comparable only between runs that use the same classifier, so the
classifier is trained with a fixed seed and recipe and cached on disk under a key made of the
dataset name, `CLASSIFIER_VERSION` and a digest of the training data. Stacked datasets reuse the
single-channel classifier of their base dataset, one channel at a time.

Besides the dataset's classes it has one "not a digit" class, trained on synthetic non-digits
(`synthetic_negatives`). Without it, a plain softmax classifier labels pixel noise confidently:
the samples of a generator after 10 steps (noise patterns) were 50% "confident 8s and 9s", so
hq_fraction passed 0.5 before training had begun. With it they are all rejected, while 95% of
real digits stay confident (measured for this module).

The cache lives in `$GAN_SWEEPER_CACHE` (default `~/.cache/gan-sweeper`). Parallel trials on one
machine share it: the first trains while holding a file lock, the others wait and then load its
file, which is written atomically (temporary file + `os.replace`), so no reader sees a torn file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import Tensor, nn

# Bump when the architecture or the training recipe changes: old cache files are then ignored
# (their names differ), so every machine retrains once instead of mixing incomparable FIDs.
CLASSIFIER_VERSION = 1
CACHE_ENV = "GAN_SWEEPER_CACHE"
# Training is seeded apart from any trial seed: every trial of every sweep is scored by the
# same network, whatever seed or order the trials run in.
TRAIN_SEED = 0
# Adam with batch 64 and no schedule, as in common small-CNN digit recipes. 2e-3 rather than
# the usual 1e-3: on the 8x8 digits (shift augmentation, 40 epochs) 1e-3 left the classifier
# under-confident, with only 90% of real digits at >= 0.9 probability (measured for this module).
_LR = 2e-3
_BATCH = 64
# Generated digits are rarely centred as exactly as the data; random shifts of up to one pixel
# keep the labels robust to that.
_MAX_SHIFT = 1
# One synthetic non-digit per this many real digits in a batch: enough for the reject class
# to catch noise, few enough that held-out digit accuracy stays at ~98-99%.
_NEG_RATIO = 4
# Labelling and feature extraction run in chunks of this many images to bound peak memory.
_CHUNK = 4096


@dataclass(frozen=True)
class Split:
    """Labelled images for training and testing a classifier; x is (N, 1, H, W) in [-1, 1]."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


class DigitClassifier(nn.Module):
    """Two conv blocks and a hidden layer, for 1 x H x W inputs with H, W divisible by 4.

    Outputs `num_classes + 1` logits: the last one (index `reject`) means "not a digit".
    `predict` also returns the post-ReLU activations of the hidden (penultimate) layer: the
    features FID and KID are computed on. `test_accuracy` is its accuracy on the held-out split.
    """

    def __init__(self, size: tuple[int, int], num_classes: int = 10, width: int = 32,
                 feature_dim: int = 64) -> None:
        super().__init__()
        h, w = size
        self.size = (h, w)
        self.num_classes = num_classes
        self.width = width
        self.feature_dim = feature_dim
        self.test_accuracy = float("nan")
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes + 1)

    @property
    def reject(self) -> int:
        """The label of the "not a digit" class."""
        return self.num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(labels, max softmax probabilities, features) of (N, 1, H, W) images, in chunks.

        A label equal to `reject` means the image was judged not to be a digit.
        """
        labels, conf, feats = [], [], []
        for chunk in x.split(_CHUNK):
            f = self.body(chunk)
            p = F.softmax(self.head(f), dim=1)
            c, y = p.max(1)
            labels.append(y)
            conf.append(c)
            feats.append(f)
        return torch.cat(labels), torch.cat(conf), torch.cat(feats)

    def hyper(self) -> dict[str, object]:
        return {"size": list(self.size), "num_classes": self.num_classes, "width": self.width,
                "feature_dim": self.feature_dim}


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each (1, H, W) image by up to `max_shift` pixels per axis; background is -1."""
    n, _, h, w = x.shape
    m = max_shift
    padded = F.pad(x, (m, m, m, m), value=-1.0)
    dy = torch.randint(0, 2 * m + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * m + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    return padded[:, 0][torch.arange(n, device=x.device)[:, None, None], rows, cols][:, None]


def synthetic_negatives(x: Tensor, generator: torch.Generator) -> Tensor:
    """As many non-digits as x has images: uniform noise, binary noise of random density,
    smooth blobs (noise at half resolution, upsampled), and digits drowned in noise (at most
    40% digit). These are what an untrained or diverging generator emits.
    """
    n, _, h, w = x.shape
    g, dev = generator, x.device
    kind = torch.randint(0, 4, (n, 1, 1, 1), generator=g, device=dev)
    uniform = torch.rand(x.shape, generator=g, device=dev) * 2 - 1
    density = torch.rand(n, 1, 1, 1, generator=g, device=dev)
    binary = torch.where(torch.rand(x.shape, generator=g, device=dev) < density, 1.0, -1.0)
    low = torch.rand(n, 1, max(2, h // 2), max(2, w // 2), generator=g, device=dev) * 2 - 1
    blobs = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    alpha = torch.rand(n, 1, 1, 1, generator=g, device=dev) * 0.4
    drowned = alpha * x + (1 - alpha) * uniform
    return torch.where(kind == 0, uniform, torch.where(kind == 1, binary,
                       torch.where(kind == 2, blobs, drowned)))


def accuracy(model: DigitClassifier, x: Tensor, y: Tensor) -> float:
    """Fraction of x labelled y; a "not a digit" label counts as an error."""
    model.eval()
    labels, _, _ = model.predict(x)
    return float((labels == y.to(labels.device)).float().mean().item()) if len(y) else float("nan")


def train_classifier(split: Split, *, epochs: int, num_classes: int = 10,
                     seed: int = TRAIN_SEED) -> DigitClassifier:
    """Train on CPU with a fixed seed; sets and returns the model with its test accuracy.

    Every batch of real digits gets a quarter as many `synthetic_negatives`, labelled
    `reject`. The global RNG is forked, so training (on a cache miss) never shifts the weight
    initialisation of the trial that triggered it: a run stays deterministic for its seed
    whether or not the classifier was cached.
    """
    x, y = split.x_train.float().cpu(), split.y_train.long().cpu()
    with torch.random.fork_rng(devices=[]), _one_thread():
        torch.manual_seed(seed)
        model = DigitClassifier(tuple(x.shape[-2:]), num_classes)
        opt = torch.optim.Adam(model.parameters(), lr=_LR)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(_BATCH):
                neg = synthetic_negatives(x[idx[: max(1, len(idx) // _NEG_RATIO)]], g)
                xb = torch.cat([random_shift(x[idx], _MAX_SHIFT, g), neg])
                yb = torch.cat([y[idx], torch.full((len(neg),), model.reject)])
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    model.test_accuracy = accuracy(model, split.x_test.float().cpu(), split.y_test.long().cpu())
    return model.eval()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    # Convolutions this small on batches of 64 gain nothing from intra-op threads, and on a
    # busy shared node extra threads thrash: the digits classifier took 11 s of CPU on one
    # thread and 80 s on two while other jobs ran (measured for this module).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gan-sweeper")


def data_digest(*tensors: Tensor) -> str:
    """Short content hash: a cache file never outlives a change of the data it was trained on."""
    h = hashlib.blake2b(digest_size=6)
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_path(key: str, digest: str) -> Path:
    return cache_dir() / f"classifier-{key}-v{CLASSIFIER_VERSION}-{digest}.pt"


def load_or_train(key: str, digest: str, split: Callable[[], Split], *, epochs: int,
                  device: torch.device, num_classes: int = 10) -> DigitClassifier:
    """The cached classifier for `key`, training and caching it first if this machine has none.

    `split` is called only on a cache miss (it may read a test split from disk). `digest`
    identifies the training data (see `data_digest`).
    """
    path = cache_path(key, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if not path.exists():  # another trial may have trained it while we waited
                model = train_classifier(split(), epochs=epochs, num_classes=num_classes)
                _atomic_save(model, path)
    return _load(path).to(device)


def _atomic_save(model: DigitClassifier, path: Path) -> None:
    state = {"version": CLASSIFIER_VERSION, "hyper": model.hyper(),
             "test_accuracy": model.test_accuracy, "state_dict": model.state_dict()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> DigitClassifier:
    state = torch.load(path, map_location="cpu", weights_only=True)
    hyper = state["hyper"]
    model = DigitClassifier(tuple(hyper["size"]), hyper["num_classes"], hyper["width"],
                            hyper["feature_dim"])
    model.load_state_dict(state["state_dict"])
    model.test_accuracy = float(state["test_accuracy"])
    return model.eval().requires_grad_(False)
