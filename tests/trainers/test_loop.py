"""The training loop: determinism, evaluation schedule, checkpoints, divergence (trainers/loop.py).

Runs are tiny (hidden 32, batch 64, tens of steps) so the whole file takes seconds on one core.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers import names
from trainers.config import LOSSES, TrialConfig, make_config
from trainers.loop import Trainer, set_threads, train

torch.set_num_threads(1)

TIMING = {names.TRAIN_SECONDS, names.EVAL_SECONDS}


def _cfg(**overrides: Any) -> TrialConfig:
    values = {"loss": "wgan-gp", "dataset": "ring8", "steps": 60, "eval_every": 20,
              "hidden": 32, "batch_size": 64, "eval_samples": 500, "device": "cpu", "seed": 3}
    return make_config({**values, **overrides})


def _untimed(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k not in TIMING}


def _assert_all_finite(metrics: dict[str, float]) -> None:
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    assert not bad, bad


def _run_with_reports(trainer: Trainer) -> tuple[dict[str, float], list[tuple[int, dict]]]:
    reports: list[tuple[int, dict]] = []
    final = trainer.run(lambda step, m: reports.append((step, dict(m))))
    return final, reports


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("loss", ["wgan-gp", "bce-ns"])
def test_same_seed_gives_identical_metrics(loss: str) -> None:
    a = train(_cfg(loss=loss, steps=20, eval_every=10))
    b = train(_cfg(loss=loss, steps=20, eval_every=10))
    assert set(TIMING) <= set(a)
    assert _untimed(a) == _untimed(b)
    c = train(_cfg(loss=loss, steps=20, eval_every=10, seed=4))
    assert _untimed(c) != _untimed(a)  # the seed matters, so the equality above means something


def test_evaluation_schedule_does_not_change_training() -> None:
    # steps 60 with eval_every 20 or 40: both evaluate at 40 and 60, so even the loss means of
    # the last window (steps 41..60) must agree; only the number of evaluations differs.
    often, often_reports = _run_with_reports(Trainer(_cfg(eval_every=20)))
    rarely, rarely_reports = _run_with_reports(Trainer(_cfg(eval_every=40)))
    assert [s for s, _ in often_reports] == [20, 40, 60]
    assert [s for s, _ in rarely_reports] == [40, 60]
    assert _untimed(often) == _untimed(rarely)
    assert names.LOSS_D in often and names.GRAD_NORM in often


def test_evaluate_leaves_weights_and_streams_untouched() -> None:
    # The random streams are counter-based (trainers/rng.py): the next training draws depend
    # on the step alone, which evaluation leaves as it is.
    t = Trainer(_cfg(steps=10))
    t.train_until(10)
    before = ({k: v.clone() for k, v in t.D.state_dict().items()},
              {k: v.clone() for k, v in t.G.state_dict().items()}, t.step)
    grads = [None if p.grad is None else p.grad.clone() for p in t.D.parameters()]
    first = t.evaluate()
    second = t.evaluate()
    for saved, net in zip(before[:2], (t.D, t.G), strict=True):
        for k, v in net.state_dict().items():
            assert torch.equal(saved[k], v), k
    assert t.step == before[2]
    for g, p in zip(grads, t.D.parameters(), strict=True):  # critic metrics use autograd.grad
        assert (g is None and p.grad is None) or torch.equal(g, p.grad)
    # same weights, same evaluation noise: same sample metrics (loss means are consumed)
    assert first[names.FID] == second[names.FID] and first[names.GRAD_NORM] == second[
        names.GRAD_NORM]


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(("loss", "schedule"), [("wgan-gp", "constant"),
                                                ("wgan-clip", "constant"), ("wgan-gp", "linear")])
def test_checkpoint_resume_matches_an_uninterrupted_run(loss: str, schedule: str,
                                                        tmp_path: Path) -> None:
    straight, straight_reports = _run_with_reports(Trainer(_cfg(loss=loss,
                                                                lr_schedule=schedule)))

    first = Trainer(_cfg(loss=loss, lr_schedule=schedule))
    first.train_until(first.next_eval_step())
    first.evaluate()
    first.train_until(30)  # stop mid-window: the running loss sums must be restored too
    path = tmp_path / "ckpt.pt"
    first.save(path)
    assert path.exists() and not path.with_name("ckpt.pt.tmp").exists()
    del first

    resumed = Trainer.load(path, device="cpu")
    assert resumed.step == 30
    final, reports = _run_with_reports(resumed)
    assert _untimed(final) == _untimed(straight)
    assert [s for s, _ in reports] == [40, 60]
    # the report at 40 averages the losses of steps 21..40, half of them from before the save
    for (_, got), (_, want) in zip(reports, straight_reports[1:], strict=True):
        assert _untimed(got) == _untimed(want)
    assert final[names.TRAIN_SECONDS] > 0


def test_linear_schedule_decays_both_learning_rates_to_zero() -> None:
    t = Trainer(_cfg(lr_schedule="linear", lr_g=1e-3, lr_d=4e-3, steps=40))
    seen = []
    for until in (0, 10, 39):
        t.train_until(until)
        seen.append(tuple(lr.item() for lr in t.learning_rates()))
    # the lr used for step k (0-based) is lr * (1 - k / steps); step 39 is the last
    assert seen[0] == pytest.approx((1e-3, 4e-3))
    assert seen[1] == pytest.approx((1e-3 * 30 / 40, 4e-3 * 30 / 40))
    assert seen[2] == pytest.approx((1e-3 / 40, 4e-3 / 40))
    const = Trainer(_cfg(lr_g=1e-3, steps=40))
    const.train_until(40)
    assert const.learning_rates()[0].item() == pytest.approx(1e-3)
    t.train_until(40)
    assert _untimed(t.evaluate()) != _untimed(const.evaluate())


# ----------------------------------------------------------------------------- divergence
def _poisoned_run(trainer: Trainer) -> tuple[dict[str, float], list[tuple[int, dict]]]:
    final, reports = _run_with_reports(trainer)  # must not raise
    assert final[names.DIVERGED] == 1.0
    assert trainer.step < trainer.config.steps  # ended early
    for _, m in reports:
        _assert_all_finite(m)
    _assert_all_finite(final)
    assert final[names.MODES_COVERED] == 0
    assert final[names.HQ_FRACTION] == 0
    assert final[names.MODE_KL] == pytest.approx(math.log(final[names.NUM_MODES]))
    assert names.FID not in final  # not reported for a diverged run, rather than NaN
    return final, reports


@pytest.mark.parametrize("loss", ["bce", "wgan-clip"])
def test_nan_weight_in_critic_stops_the_run_at_the_next_finite_check(loss: str) -> None:
    t = Trainer(_cfg(loss=loss, steps=500, eval_every=100))
    with torch.no_grad():
        next(t.D.parameters())[0, 0] = math.nan
    final, reports = _poisoned_run(t)
    # The loss sums are checked every 25 generator steps: the run froze at step 25. The host
    # hears of it at the next evaluation (reading the device every 25 steps would stall a GPU
    # each time), so the run stops there, standing still in between.
    assert final[names.STEP] == 25
    assert t.step == 100 and [s for s, _ in reports] == [100]
    assert names.LOSS_D not in final  # a NaN mean loss is dropped, not reported


def test_exploded_generator_weight_is_caught_at_evaluation() -> None:
    t = Trainer(_cfg(loss="bce-ns", steps=500, eval_every=10))
    with torch.no_grad():
        next(t.G.parameters())[0, 0] = 1e7  # finite, so only the weight check can see it
    final, reports = _poisoned_run(t)
    assert t.step == 10 and [s for s, _ in reports] == [10]


def test_infinite_generator_output_is_caught() -> None:
    t = Trainer(_cfg(loss="wgan-gp", steps=500, eval_every=5))
    with torch.no_grad():
        list(t.G.parameters())[-1].fill_(math.inf)  # last bias: every sample is (inf, inf)
    _poisoned_run(t)
    assert t.step == 5  # caught at the first evaluation


def test_diverged_trainer_does_not_train_further() -> None:
    t = Trainer(_cfg(loss="bce", steps=500, eval_every=100))
    with torch.no_grad():
        next(t.D.parameters()).fill_(math.nan)
    t.run()
    step = t.step
    t.train_until(200)
    assert t.step == step and t.done


# ----------------------------------------------------------------------------- every loss
@pytest.mark.parametrize("dataset,k", [("ring8", 8), ("grid25", 25)])
@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains_on_every_mixture(loss: str, dataset: str, k: int) -> None:
    final, reports = _run_with_reports(Trainer(_cfg(loss=loss, dataset=dataset, steps=6,
                                                    eval_every=3)))
    assert [s for s, _ in reports] == [3, 6]
    _assert_all_finite(final)
    assert final[names.STEP] == 6 and final[names.DIVERGED] == 0
    assert final[names.NUM_MODES] == k
    assert 0 <= final[names.MODES_COVERED] <= k
    assert final[names.FID_N] == 500
    assert final[names.GRAD_NORM] > 0  # reported for every loss
    assert (names.W_DISTANCE in final) == loss.startswith("wgan")
    assert {names.LOSS_D, names.LOSS_G} <= set(final)


def test_wgan_clip_loop_keeps_critic_weights_clipped() -> None:
    t = Trainer(_cfg(loss="wgan-clip", lr_d=1.0, clip_value=0.05, steps=3))
    t.train_until(3)
    c = torch.tensor(0.05)  # the clamp bound as float32, like the weights
    for p in t.D.parameters():
        assert p.abs().max() <= c
    assert max(p.abs().max().item() for p in t.D.parameters()) == pytest.approx(0.05)


# ----------------------------------------------------------------------------- threads
def test_set_threads_uses_the_cpus_this_process_may_run_on() -> None:
    try:
        assert set_threads() == len(os.sched_getaffinity(0)) == torch.get_num_threads()
        assert set_threads(1) == 1 == torch.get_num_threads()
        assert set_threads(0) == len(os.sched_getaffinity(0))  # 0 or None mean "all granted"
    finally:
        torch.set_num_threads(1)
