"""The evaluation classifier: accuracy, the on-disk cache, and safety under parallel trials."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from trainers import classifier as clf
from trainers.config import make_config
from trainers.data import build_dataset

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


@pytest.fixture(scope="session", autouse=True)
def classifier_cache(tmp_path_factory: pytest.TempPathFactory):
    """The session's classifier cache, shared with test_images.py, and one torch thread."""
    path = tmp_path_factory.getbasetemp() / "gan-sweeper-cache"
    path.mkdir(exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(clf.CACHE_ENV, str(path))
        yield path
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return build_dataset(make_config({"dataset": "digits", "eval_samples": 100}), CPU)


def tiny_split(n: int = 48) -> clf.Split:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    y = torch.arange(n) % 10
    return clf.Split(x[: n // 2], y[: n // 2], x[n // 2:], y[n // 2:])


def test_digits_classifier_reaches_97_percent_on_its_held_out_split(digits) -> None:
    model = digits.classifier
    split = digits.source.split()
    assert len(split.x_train) == 1437 and len(split.x_test) == 360  # fixed 80/20, stratified
    acc = clf.accuracy(model, split.x_test, split.y_test)
    assert acc >= 0.97
    assert model.test_accuracy == pytest.approx(acc)  # stored with the weights, not re-derived


def test_cache_file_is_reused_without_retraining(digits, classifier_cache) -> None:
    model = digits.classifier
    path = clf.cache_path("digits", digits.source.digest)
    assert path.parent == classifier_cache and path.is_file()
    assert f"-v{clf.CLASSIFIER_VERSION}-" in path.name

    def must_not_train() -> clf.Split:
        raise AssertionError("a cached classifier was trained again")

    again = clf.load_or_train("digits", digits.source.digest, must_not_train, epochs=1,
                              device=CPU)
    assert again.test_accuracy == model.test_accuracy
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_stacked_digits_reuse_the_single_channel_classifier(digits) -> None:
    stacked = build_dataset(make_config({"dataset": "stacked-digits", "eval_samples": 100}),
                            CPU)
    assert stacked.source.key == "digits" and stacked.source.digest == digits.source.digest
    x = digits.sample(30, torch.Generator().manual_seed(0))
    assert torch.equal(stacked.classifier.predict(x)[0], digits.classifier.predict(x)[0])


def test_digest_changes_with_the_data() -> None:
    x = torch.zeros(4, 8, 8)
    y = torch.arange(4)
    changed = x.clone()
    changed[0, 0, 0] = 1
    assert clf.data_digest(x, y) != clf.data_digest(changed, y)
    assert clf.data_digest(x, y) != clf.data_digest(x, y.flip(0))
    assert clf.data_digest(x, y) == clf.data_digest(x.clone(), y.clone())


def test_training_is_seeded_and_leaves_global_rng_and_threads_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    a = clf.train_classifier(tiny_split(), epochs=2)
    assert torch.equal(torch.rand(3), expected)  # a trial's weight init is not shifted
    assert torch.get_num_threads() == threads
    b = clf.train_classifier(tiny_split(), epochs=2)
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert 0 <= a.test_accuracy <= 1


def test_random_shift_moves_whole_images_by_at_most_one_pixel() -> None:
    x = torch.rand(200, 1, 8, 8) * 2 - 1
    out = clf.random_shift(x, 1, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=-1.0)
    shifts = [padded[:, :, dy:dy + 8, dx:dx + 8] for dy in range(3) for dx in range(3)]
    match = torch.stack([(out == s).flatten(1).all(1) for s in shifts], 1)
    assert match.any(1).all()  # every output is one of the 9 shifted copies
    assert match[:, 4].float().mean() < 0.3  # and most are actually moved (1/9 unmoved)


_CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import torch
    from trainers import classifier as clf

    work = Path(sys.argv[1])
    (work / f"ready-{sys.argv[2]}").touch()
    while len(list(work.glob("ready-*"))) < 2:  # start both at the same moment
        time.sleep(0.01)

    def split():
        with open(work / "trained.log", "a") as f:
            f.write("trained\\n")
        time.sleep(1.0)  # a slow first training: the other process must wait for the lock
        x = torch.rand(24, 1, 8, 8) * 2 - 1
        return clf.Split(x[:16], torch.arange(16) % 10, x[16:], torch.arange(8))

    m = clf.load_or_train("tiny", "digest", split, epochs=1, device=torch.device("cpu"))
    print(sum(float(p.sum()) for p in m.state_dict().values()))
""")


def test_parallel_first_use_trains_once_and_both_load_the_same_file(tmp_path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, clf.CACHE_ENV: str(cache), "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), str(i)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    assert (tmp_path / "trained.log").read_text().count("trained") == 1
    assert outs[0][0] == outs[1][0]  # identical weights
    files = sorted(f.name for f in cache.iterdir())
    assert files == [f"classifier-tiny-v{clf.CLASSIFIER_VERSION}-digest.pt",
                     f"classifier-tiny-v{clf.CLASSIFIER_VERSION}-digest.pt.lock"]
