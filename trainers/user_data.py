"""Your own data: `folder:PATH` (images), `npy:PATH` (points or images) and CIFAR-10.

These sets have no labelled modes the metrics could count, so they are scored as the papers
on unlabelled data do: FID and KID between Gaussian fits / kernels of features, and the k-NN
manifold measures precision, recall, density and coverage (`trainers/prdc.py`), in a stated
feature space:
  points                 the raw coordinates;
  images, `pixels`       the pixel values, average-pooled to at most 16 x 16 per channel
                         (768 numbers for 32 x 32 RGB): cheap, comparable only within this
                         project, like the classifier FID of the digit sets;
  images, `inception`    Inception-v3 pool features (`trainers/inception.py`), the numbers
                         papers publish. `auto` is `pixels`: Inception costs minutes per
                         evaluation on a CPU, so it is asked for, never implied.

Success without modes (`trainers.quality.prdc_quality`): a seed succeeds when its coverage
and its precision each reach a stated fraction of the real data's own, measured as one half
of the real evaluation set against the other.

Files are read without running code: `.npy` with allow_pickle=False, images with Pillow,
CIFAR-10's pickled batches with an unpickler that admits only the numpy array it holds.
"""

from __future__ import annotations

import functools
import importlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from trainers import inception, metrics, names, prdc
from trainers.classifier import data_digest
from trainers.errors import ConfigError
from trainers.images import (
    _RANGE_TOLERANCE,
    check_samples,
    data_root,
    kid,
    pixel_features,
    real_inception_features,
)
from trainers.quality import DEFAULT_RULE, SuccessRule, prdc_quality
from trainers.seeds import REAL_EVAL_SEED

if TYPE_CHECKING:
    from trainers.config import TrialConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PREFIXES = ("folder:", "npy:")
# Points in a `.npy` file: at most this many coordinates (the MLP models take flat vectors).
MAX_POINT_DIMS = 4096


@dataclass(frozen=True)
class Loaded:
    """A real set in memory: (N, *shape) float32, images in [-1, 1]; `digest` names its
    content in cache keys."""

    x: Tensor
    digest: str


def digest(a: np.ndarray) -> str:
    """The content hash the evaluation classifier's cache uses, of a numpy array."""
    return data_digest(torch.from_numpy(np.ascontiguousarray(a)))


# ---------------------------------------------------------------------------- .npy
def _npy_path(name: str) -> Path:
    path = Path(name[len("npy:"):]).expanduser()
    if not path.is_file():
        raise ConfigError(f"dataset {name}: no such file {path}; pass npy:PATH to an array "
                          "saved with numpy.save")
    return path


def _npy_check(name: str, a: np.ndarray) -> None:
    if a.ndim not in (2, 4) or len(a) == 0:
        raise ConfigError(f"dataset {name}: the array has shape {a.shape}; it must be N x D "
                          "(points) or N x C x H x W (images)")
    if a.dtype.kind not in "fiu":
        raise ConfigError(f"dataset {name}: the array has dtype {a.dtype}; save numbers "
                          "(float, or uint8 images in 0..255)")
    if a.ndim == 2 and a.shape[1] > MAX_POINT_DIMS:
        raise ConfigError(f"dataset {name}: {a.shape[1]} coordinates per point is more than "
                          f"{MAX_POINT_DIMS}; save images as N x C x H x W")
    if a.ndim == 4 and a.shape[1] not in (1, 3):
        raise ConfigError(f"dataset {name}: images must have 1 or 3 channels (N x C x H x W), "
                          f"got {a.shape[1]} in shape {a.shape}")


def npy_shape(name: str) -> tuple[int, ...]:
    """One sample's shape, from the file's header (the data are not read)."""
    try:
        a = np.load(_npy_path(name), mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ConfigError(f"dataset {name}: not a readable .npy array ({_short(e)}); save it "
                          "with numpy.save") from None
    _npy_check(name, a)
    return tuple(int(d) for d in a.shape[1:])


def check_fits(name: str, elements: int, bytes_per_element: int) -> None:
    """One line, before anything is read, when the decoded data cannot fit in memory."""
    from trainers.files import available_memory

    need, room = elements * bytes_per_element, available_memory()
    if need > room:
        raise ConfigError(f"dataset {name} needs {need / 2**30:.1f} GiB in memory to load, "
                          f"more than the {room / 2**30:.1f} GiB available; use fewer or "
                          "smaller images (--image-size)")


def load_npy(name: str) -> Loaded:
    """N x D points (any scale) or N x C x H x W images: floats in [-1, 1] or uint8 0..255."""
    npy_shape(name)  # a file that is no plain array is one line here, before any read
    header = np.load(_npy_path(name), mmap_mode="r", allow_pickle=False)
    # the array itself, then the float32 copy the trainer holds
    check_fits(name, header.size, header.dtype.itemsize + 4)
    a = np.load(_npy_path(name), allow_pickle=False)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ConfigError(f"dataset {name}: the array holds NaN or inf values; remove those "
                          "samples")
    x = torch.from_numpy(np.ascontiguousarray(a))
    if a.ndim == 4:
        if a.dtype == np.uint8:
            x = x.float() / 127.5 - 1.0
        elif a.dtype.kind != "f" or a.min() < -1 - _RANGE_TOLERANCE or \
                a.max() > 1 + _RANGE_TOLERANCE:
            raise ConfigError(f"dataset {name}: images must be floats in [-1, 1] or uint8 in "
                              f"0..255, got {a.dtype} in [{a.min():.3g}, {a.max():.3g}]")
    return Loaded(x.float().clamp_(-1, 1) if a.ndim == 4 else x.float(), digest(a))


# ---------------------------------------------------------------------------- folder
def _image_files(name: str) -> list[Path]:
    """PNG/JPEG files in the folder and in its sub-folders one level down (class folders)."""
    root = Path(name[len("folder:"):]).expanduser()
    if not root.is_dir():
        raise ConfigError(f"dataset {name}: no such folder {root}; pass folder:PATH to a folder "
                          "of PNG or JPEG images")
    files = sorted(p for pattern in ("*", "*/*") for p in root.glob(pattern)
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"dataset {name}: no PNG or JPEG images in {root} or its "
                          "sub-folders")
    return files


def _open(path: Path):  # -> PIL.Image.Image
    from PIL import Image

    try:
        im = Image.open(path)
        im.size  # noqa: B018 - the header is read lazily
        return im
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad files
        raise ConfigError(f"cannot read image {path} ({_short(e)}); remove it or save it as "
                          "PNG or JPEG") from None


def _is_grey(mode: str) -> bool:
    return mode in ("1", "L", "LA", "I", "I;16", "F")


@functools.cache
def _folder_probe(name: str, mtime: float) -> tuple[tuple[Path, ...], int, tuple[int, int]]:
    """(files, channels, size) of a folder, from the image headers only."""
    del mtime  # part of the cache key: a folder that changed is probed again
    files = _image_files(name)
    sizes, grey = set(), True
    for path in files:
        with _open(path) as im:
            sizes.add(im.size)
            grey = grey and _is_grey(im.mode)
    return tuple(files), 1 if grey else 3, sizes.pop() if len(sizes) == 1 else (0, 0)


def folder_shape(name: str, image_size: int = 0) -> tuple[int, int, int]:
    root = Path(name[len("folder:"):]).expanduser()
    files, channels, (w, h) = _folder_probe(name, root.stat().st_mtime if root.exists() else 0)
    if image_size:
        return channels, image_size, image_size
    if not w:
        raise ConfigError(f"dataset {name}: the images differ in size; pass --image-size S to "
                          "resize them (shorter side to S, then the centre S x S)")
    return channels, h, w


def load_folder(name: str, image_size: int = 0) -> Loaded:
    """Every image of the folder, as (N, C, S, S) (or its own H x W) in [-1, 1]; grey when all
    images are, else RGB. With `image_size`, the shorter side is resized to it (bilinear,
    antialiased) and the centre square kept."""
    from PIL import Image

    c, h, w = folder_shape(name, image_size)
    root = Path(name[len("folder:"):]).expanduser()
    files, _, _ = _folder_probe(name, root.stat().st_mtime)
    check_fits(name, len(files) * c * h * w, 1 + 4)  # uint8 pixels, then their float32 copy
    out = np.empty((len(files), h, w, c), dtype=np.uint8)
    for i, path in enumerate(files):
        with _open(path) as im:
            try:
                im = im.convert("L" if c == 1 else "RGB")
            except Exception as e:  # noqa: BLE001 - a truncated file fails only here
                raise ConfigError(f"cannot read image {path} ({_short(e)}); remove it or "
                                  "save it as PNG or JPEG") from None
            if image_size and im.size != (w, h):
                scale = image_size / min(im.size)
                size = (max(w, round(im.size[0] * scale)), max(h, round(im.size[1] * scale)))
                im = im.resize(size, Image.Resampling.BILINEAR)
                left, top = (size[0] - w) // 2, (size[1] - h) // 2
                im = im.crop((left, top, left + w, top + h))
            out[i] = np.asarray(im).reshape(h, w, c)
    x = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return Loaded(x.contiguous(), digest(out))


# ---------------------------------------------------------------------------- CIFAR-10
CIFAR_FOLDER = "cifar-10-batches-py"  # torchvision's layout and file format
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and nothing that could run
    code: a CIFAR batch needs only numpy's array reconstructor, ndarray and dtype (and numpy
    scalars and `_codecs.encode` for bytes, in a batch re-saved by Python 3 at protocol 2)."""

    ALLOWED = {(core, name) for core in ("numpy.core.multiarray", "numpy._core.multiarray")
               for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"),
                                                         ("numpy", "dtype"),
                                                         ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks to load {module}.{name}, which a CIFAR batch "
                                         "never does")
        if module.startswith("numpy.core"):  # numpy 2 moved it; the old name still pickles
            module = module.replace("numpy.core", "numpy._core")
        return getattr(importlib.import_module(module), name)


def _read_cifar_batch(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            batch = _ArrayOnlyUnpickler(f, encoding="latin1").load()
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"its data have shape {data.shape}, not N x 3072")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError,
            AttributeError, IndexError) as e:
        raise ConfigError(f"dataset cifar10: {path} is not a CIFAR-10 batch ({_short(e)}); "
                          "replace it with the original file, or pass --download") from None
    return data.reshape(-1, 3, 32, 32)


def load_cifar10(cfg: TrialConfig) -> Loaded:
    """The 50,000 training images of CIFAR-10 from `data_root(cfg)`/cifar-10-batches-py."""
    from trainers.images import _folder_lock

    root = data_root(cfg)
    folder = root / CIFAR_FOLDER
    if cfg.download:
        root.mkdir(parents=True, exist_ok=True)
    elif not root.is_dir():
        raise ConfigError(f"dataset cifar10: data folder {root} does not exist; pass "
                          "--download to fetch CIFAR-10 into it, or --data-root DIR for a "
                          f"folder that has {CIFAR_FOLDER}")
    with _folder_lock(root, "CIFAR10"):
        if cfg.download and not all((folder / f).is_file() for f in CIFAR_TRAIN):
            from torchvision.datasets import CIFAR10
            from torchvision.datasets.utils import download_and_extract_archive

            try:  # the archive's MD5 is checked before it is unpacked
                download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename,
                                             md5=CIFAR10.tgz_md5)
            except Exception as e:  # noqa: BLE001 - network errors come in many types
                raise ConfigError(f"dataset cifar10: downloading into {root} failed "
                                  f"({_short(e)}); copy {CIFAR_FOLDER} there instead") from None
        missing = [f for f in CIFAR_TRAIN if not (folder / f).is_file()]
        if missing:
            raise ConfigError(f"dataset cifar10: {folder / missing[0]} is missing; pass "
                              "--download to fetch CIFAR-10, or --data-root DIR for a folder "
                              f"that has {CIFAR_FOLDER}")
        data = np.concatenate([_read_cifar_batch(folder / f) for f in CIFAR_TRAIN])
    x = torch.from_numpy(data).float() / 127.5 - 1.0
    return Loaded(x, digest(data))


# ---------------------------------------------------------------------------- the dataset
class SampleSet:
    """A finite real set without labelled modes, sampled uniformly with replacement in
    training; evaluation compares against `eval_samples` of its samples drawn without
    replacement (a fixed seed), so there must be at least that many."""

    num_modes = 0
    noise_dims = (1, 0)  # one uniform picks the sample

    def __init__(self, name: str, source: Loaded, *, device: torch.device, eval_samples: int,
                 fid_backend: str = "auto") -> None:
        self.name = name
        self.source = source
        self.device = device
        self.data = source.x.to(device)
        self.shape = tuple(int(d) for d in self.data.shape[1:])
        self.kind = "points" if len(self.shape) == 1 else "image"
        backend = "pixels" if fid_backend == "auto" else fid_backend
        if self.kind == "points":
            backend = "coordinates"
        elif backend == "classifier":
            raise ConfigError(f"dataset {name} has no evaluation classifier (its modes are not "
                              "labelled); use --fid-backend pixels or inception")
        elif backend == "inception":
            inception.check_available()
        self.backend = backend
        if len(self.data) < eval_samples:
            raise ConfigError(f"dataset {name} has {len(self.data):,} samples, fewer than "
                              f"eval_samples = {eval_samples:,}; pass --eval-samples "
                              f"{len(self.data)} or less (sweeper eval: a samples file of at "
                              "most that many), or add samples")
        self.eval_samples = eval_samples

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        idx = torch.randint(len(self.data), (n,), generator=generator, device=self.device)
        return self.data[idx]

    def from_noise(self, u: Tensor, z: Tensor) -> Tensor:
        n = len(self.data)
        return self.data[(u[..., 0] * n).long().clamp_(max=n - 1)]

    def evaluate(self, fake: Tensor, rule: SuccessRule = DEFAULT_RULE) -> dict[str, float]:
        x = self._check(fake)
        f = self._features(x)
        real = self._real
        out = {names.FID: metrics.frechet_distance(*real.stats, *metrics.gaussian_stats(f)),
               names.FID_N: float(len(f))}
        if self.kind == "image":
            out[names.KID] = kid(real.features, f)
        found = prdc.prdc(real.manifold, f)
        out.update(found)
        out.update(prdc_quality(found, real.reference, rule))
        return out

    @functools.cached_property
    def _real(self) -> _RealSet:
        g = torch.Generator(device="cpu").manual_seed(REAL_EVAL_SEED)
        idx = torch.randperm(len(self.data), generator=g)[:self.eval_samples].to(self.device)
        f = self._features(self.data[idx], real=True)
        half = len(f) // 2
        reference = prdc.prdc(f[:half], f[half:2 * half])  # real against real: the bar
        return _RealSet(metrics.gaussian_stats(f), f, prdc.manifold(f), reference)

    def _features(self, x: Tensor, *, real: bool = False) -> np.ndarray:
        if self.backend == "coordinates":
            return x.detach().double().cpu().numpy().reshape(len(x), -1)
        if self.backend == "pixels":
            return pixel_features(x).double().cpu().numpy()
        if not real:
            return inception.features(x).numpy()
        return real_inception_features(x, self.source.digest)

    def _check(self, fake: Tensor) -> Tensor:
        return check_samples(self.name, self.shape, self.device, fake)


@dataclass(frozen=True)
class _RealSet:
    stats: tuple[np.ndarray, np.ndarray]
    features: np.ndarray
    manifold: prdc.Manifold | None
    reference: dict[str, float]  # precision/recall/density/coverage of real half vs half


# ---------------------------------------------------------------------------- registry glue
def is_user_dataset(name: str) -> bool:
    return name.startswith(PREFIXES)


def resolve_dataset(name: str, base: Path | None = None) -> str:
    """folder:/npy: with a relative path made absolute (against `base`, default the current
    folder), like a model file: trials run in folders of their own, and `stable --confirm`
    or an exported setting must still find the data. Other names are returned as they are."""
    if not is_user_dataset(name):
        return name
    prefix, _, where = name.partition(":")
    path = Path(where).expanduser()
    if where and not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"{prefix}:{path.resolve()}" if where else name


def check_user_dataset_name(name: str) -> None:
    prefix, _, path = name.partition(":")
    if not path.strip():
        raise ConfigError(f"dataset {name!r} names no path; use {prefix}:PATH")


def user_dataset_shape(name: str, image_size: int = 0) -> tuple[int, ...]:
    if name.startswith("npy:"):
        return npy_shape(name)
    return folder_shape(name, image_size)


def build_user_dataset(cfg: TrialConfig, device: torch.device) -> SampleSet:
    load: Callable[[], Loaded] = (
        (lambda: load_npy(cfg.dataset)) if cfg.dataset.startswith("npy:")
        else (lambda: load_folder(cfg.dataset, cfg.image_size)))
    return SampleSet(cfg.dataset, load(), device=device, eval_samples=cfg.eval_samples,
                     fid_backend=cfg.fid_backend)


def build_cifar10(cfg: TrialConfig, device: torch.device) -> SampleSet:
    return SampleSet(cfg.dataset, load_cifar10(cfg), device=device,
                     eval_samples=cfg.eval_samples, fid_backend=cfg.fid_backend)


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:160]

