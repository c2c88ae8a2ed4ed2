"""Your own data: folder:PATH, npy:PATH and CIFAR-10 read from files the tests write in the real
formats; bad files give one line and run no code; DCGAN nets follow the image size."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainers import names, user_data
from trainers.config import ConfigError, make_config
from trainers.data import build_dataset, dataset_shape, ring_centres
from trainers.loop import Trainer
from trainers.models import build_models, conv_depth, stackers
from trainers.quality import failed_metrics

CPU = torch.device("cpu")
PRDC = (names.PRECISION, names.RECALL, names.DENSITY, names.COVERAGE)


def ring8(n, seed, modes=range(8)):
    rng = np.random.default_rng(seed)
    return (ring_centres(8)[rng.choice(list(modes), n)]
            + 0.01 * rng.standard_normal((n, 2))).astype(np.float32)


def build(dataset, **values):
    return build_dataset(make_config({"dataset": dataset, **values}), CPU)


def one_line_error(fn, *words):
    with pytest.raises(ConfigError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    return msg


# ------------------------------------------------------------------------------ npy: points
def test_npy_points_score_on_their_coordinates_and_collapse_fails(tmp_path):
    np.save(tmp_path / "r.npy", ring8(5000, 0))
    data = build(f"npy:{tmp_path}/r.npy")
    assert data.kind == "points" and data.shape == (2,) and data.num_modes == 0
    good = data.evaluate(torch.from_numpy(ring8(2500, 1)))
    assert good[names.SEED_SUCCESS] == 1 and good[names.SEED_SCORE] < 0.05
    assert good[names.FID] < 0.01 and all(k in good for k in PRDC)
    half = data.evaluate(torch.from_numpy(ring8(2500, 2, modes=range(4))))
    assert half[names.SEED_SUCCESS] == 0  # coverage ~0.5 of the real data's
    assert half[names.PRECISION] > 0.95 and 0.4 < half[names.SEED_SCORE] < 0.6
    assert names.HQ_FRACTION not in good  # no made-up mode metrics
    # The default rule's calibration (trainers/quality.py): one dropped mode of eight passes,
    # three fail.
    assert data.evaluate(torch.from_numpy(ring8(2500, 3, modes=range(7))))[
        names.SEED_SUCCESS] == 1
    assert data.evaluate(torch.from_numpy(ring8(2500, 4, modes=range(5))))[
        names.SEED_SUCCESS] == 0


def test_npy_images_in_uint8_or_float_and_the_shape_from_the_header(tmp_path):
    u8 = np.random.default_rng(0).integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    np.save(tmp_path / "f.npy", u8.astype(np.float32) / 127.5 - 1)
    cfg = make_config({"dataset": f"npy:{tmp_path}/u8.npy", "eval_samples": 40})
    assert dataset_shape(cfg) == (3, 8, 8)
    a = build(f"npy:{tmp_path}/u8.npy", eval_samples=40)
    b = build(f"npy:{tmp_path}/f.npy", eval_samples=40)
    assert a.kind == "image" and torch.allclose(a.data, b.data, atol=1e-6)
    assert a.data.min() >= -1 and a.data.max() <= 1


@pytest.mark.parametrize("array, words", [
    (np.zeros((10, 2, 2)), ["shape (10, 2, 2)", "N x D"]),
    (np.zeros(10), ["shape (10,)"]),
    (np.array([["a", "b"]] * 10), ["dtype", "numbers"]),
    (np.full((10, 2), np.nan), ["NaN or inf"]),
    (np.full((10, 1, 4, 4), 3.0, np.float32), ["[-1, 1]", "uint8"]),
    (np.zeros((10, 4, 4, 4), np.float32), ["1 or 3 channels"]),
])
def test_bad_npy_arrays_are_one_line(tmp_path, array, words):
    np.save(tmp_path / "bad.npy", array)
    one_line_error(lambda: build(f"npy:{tmp_path}/bad.npy", eval_samples=5), *words)


def test_too_few_samples_and_missing_files_are_one_line(tmp_path):
    np.save(tmp_path / "small.npy", ring8(100, 0))
    one_line_error(lambda: build(f"npy:{tmp_path}/small.npy"), "100 samples",
                   "--eval-samples 100")
    one_line_error(lambda: build(f"npy:{tmp_path}/none.npy"), "no such file")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    one_line_error(lambda: build(f"npy:{tmp_path}/junk.npy"), "not a readable .npy")
    one_line_error(lambda: make_config({"dataset": "npy:"}), "npy:PATH")
    one_line_error(lambda: make_config({"dataset": "nope"}), "folder:PATH or npy:PATH")


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['BOOM_FILE']}",))


def test_a_pickled_npy_never_runs_its_code(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOM_FILE", str(tmp_path / "ran"))
    np.save(tmp_path / "evil.npy", np.array([_Boom()] * 10, dtype=object), allow_pickle=True)
    one_line_error(lambda: build(f"npy:{tmp_path}/evil.npy", eval_samples=5), "numpy.save")
    assert not (tmp_path / "ran").exists()


# ------------------------------------------------------------------------------ folder:
def write_images(root: Path, n: int, size=(12, 12), mode="L", suffix=".png", classes=2):
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % classes}" if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
            folder / f"{i}{suffix}")


def test_folder_of_grey_pngs_in_class_folders(tmp_path):
    write_images(tmp_path / "d", 30)
    data = build(f"folder:{tmp_path}/d", eval_samples=30)
    assert data.shape == (1, 12, 12) and len(data.data) == 30
    assert -1 <= data.data.min() and data.data.max() <= 1
    png = np.array(Image.open(sorted((tmp_path / "d" / "class0").glob("*.png"))[0]))
    assert torch.allclose(data.data[0, 0], torch.from_numpy(png).float() / 127.5 - 1)
    got = data.evaluate(data.sample(30, torch.Generator().manual_seed(0)))
    assert {names.FID, names.KID, *PRDC, names.SEED_SUCCESS} <= set(got)


def test_colour_jpegs_of_mixed_sizes_need_image_size(tmp_path):
    write_images(tmp_path / "c", 6, size=(20, 16), mode="RGB", suffix=".jpg", classes=0)
    write_images(tmp_path / "c" / "more", 6, size=(40, 40), mode="RGB", suffix=".JPEG",
                 classes=0)
    one_line_error(lambda: build(f"folder:{tmp_path}/c", eval_samples=12), "differ in size",
                   "--image-size")
    data = build(f"folder:{tmp_path}/c", eval_samples=12, image_size=16)
    assert data.shape == (3, 16, 16) and len(data.data) == 12


def test_bad_folders_are_one_line(tmp_path):
    one_line_error(lambda: build(f"folder:{tmp_path}/none"), "no such folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    one_line_error(lambda: build(f"folder:{tmp_path}/empty"), "no PNG or JPEG")
    write_images(tmp_path / "broken", 4, classes=0)
    (tmp_path / "broken" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    user_data._folder_probe.cache_clear()
    one_line_error(lambda: build(f"folder:{tmp_path}/broken", eval_samples=4), "bad.png",
                   "cannot read image")


# ------------------------------------------------------------------------------ CIFAR-10
def write_cifar(root: Path, per_batch: int = 8) -> np.ndarray:
    """torchvision's python CIFAR-10 layout: pickled dicts of uint8 rows of 3,072 (CHW)."""
    folder = root / user_data.CIFAR_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for name in (*user_data.CIFAR_TRAIN, "test_batch"):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batch = {"batch_label": name, "labels": rng.integers(0, 10, per_batch).tolist(),
                 "data": data, "filenames": [f"{i}.png" for i in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        if name != "test_batch":
            rows.append(data)
    return np.concatenate(rows).reshape(-1, 3, 32, 32)


def test_cifar10_reads_torchvisions_format(tmp_path):
    rows = write_cifar(tmp_path)
    data = build("cifar10", data_root=str(tmp_path), eval_samples=40)
    assert data.shape == (3, 32, 32) and len(data.data) == 40
    assert torch.allclose(data.data, torch.from_numpy(rows).float() / 127.5 - 1)


def test_cifar10_errors_and_a_hostile_batch_runs_nothing(tmp_path, monkeypatch):
    one_line_error(lambda: build("cifar10", data_root=str(tmp_path / "none")),
                   "does not exist", "--download")
    (tmp_path / "empty").mkdir()
    one_line_error(lambda: build("cifar10", data_root=str(tmp_path / "empty")),
                   "data_batch_1 is missing")
    write_cifar(tmp_path / "evil")
    monkeypatch.setenv("BOOM_FILE", str(tmp_path / "ran"))
    with open(tmp_path / "evil" / user_data.CIFAR_FOLDER / "data_batch_3", "wb") as f:
        pickle.dump({"data": _Boom()}, f, protocol=2)
    one_line_error(lambda: build("cifar10", data_root=str(tmp_path / "evil"), eval_samples=8),
                   "data_batch_3 is not a CIFAR-10 batch", "posix.system")
    assert not (tmp_path / "ran").exists()


# ------------------------------------------------------------------------------ models, rule
@pytest.mark.parametrize("side, depth", [(8, 2), (16, 2), (28, 2), (32, 3), (64, 4)])
def test_dcgan_depth_follows_the_image_size(side, depth):
    cfg = make_config({"dataset": "digits", "hidden": 4})
    g, d = build_models(cfg, (3, side, side))
    assert conv_depth((3, side, side)) == depth
    x = g(torch.randn(2, cfg.z_dim))
    assert x.shape == (2, 3, side, side) and d(x).shape == (2, 1)
    # The hand-written stacked form covers the two-layer nets; deeper ones use torch.func.
    assert (stackers(cfg, (3, side, side)) is not None) == (depth == 2)


def test_a_32x32_folder_trains_a_three_layer_dcgan_population(tmp_path):
    write_images(tmp_path / "d", 20, size=(32, 32), mode="RGB")
    cfg = make_config({"dataset": f"folder:{tmp_path}/d", "loss": "wgan-gp", "steps": 4,
                       "eval_every": 4, "hidden": 4, "batch_size": 8, "eval_samples": 20,
                       "n_critic": 1})
    final = Trainer(cfg).run()
    assert final[names.STEP] == 4 and final[names.DIVERGED] == 0
    assert all(np.isfinite(final[k]) for k in (names.FID, names.KID, *PRDC))


def test_a_diverged_seed_without_modes_is_a_failure_with_no_mode_metrics():
    m = failed_metrics(0)
    assert m[names.SEED_SUCCESS] == 0 and m[names.SEED_SCORE] == 1 and m[names.COVERAGE] == 0
    assert names.MODES_HELD not in m


def test_relative_paths_resolve_against_the_callers_folder(tmp_path):
    assert user_data.resolve_dataset("npy:a/b.npy", tmp_path) == f"npy:{tmp_path.resolve()}/a/b.npy"
    assert user_data.resolve_dataset("folder:/x/y", tmp_path) == "folder:/x/y"
    assert user_data.resolve_dataset("ring8", tmp_path) == "ring8"


def test_data_that_cannot_fit_in_memory_is_one_line_before_it_is_read(tmp_path, monkeypatch):
    import trainers.files

    np.save(tmp_path / "r.npy", ring8(5000, 0))
    write_images(tmp_path / "d", 4, classes=0)
    monkeypatch.setattr(trainers.files, "available_memory", lambda: 1000)
    one_line_error(lambda: build(f"npy:{tmp_path}/r.npy"), "GiB in memory", "available")
    one_line_error(lambda: build(f"folder:{tmp_path}/d", eval_samples=4), "GiB in memory")


def test_cifar10_download_fetches_the_archive_and_reads_it(tmp_path, monkeypatch):
    """--download: torchvision's archive fetch, then our reader. The network cannot be
    reached here, so only the fetch is replaced (it copies a tarball in the real layout);
    unpacking and reading are the real code."""
    import tarfile

    import torchvision.datasets.utils as tvu

    rows = write_cifar(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / user_data.CIFAR_FOLDER, arcname=user_data.CIFAR_FOLDER)
    fetched = []

    def fake_download(url, root, filename=None, md5=None, *args, **kwargs):
        fetched.append((url, md5))
        Path(root, filename).write_bytes(archive.read_bytes())

    monkeypatch.setattr(tvu, "download_url", fake_download)
    data = build("cifar10", data_root=str(tmp_path / "data"), download=True, eval_samples=40)
    assert len(fetched) == 1 and fetched[0][0].startswith("https://")
    assert fetched[0][1] == "c58f30108f718f92721af3b95e74349a"  # the archive's MD5 is checked
    assert torch.allclose(data.data, torch.from_numpy(rows).float() / 127.5 - 1)
    build("cifar10", data_root=str(tmp_path / "data"), download=True, eval_samples=40)
    assert len(fetched) == 1  # present files are not fetched again
