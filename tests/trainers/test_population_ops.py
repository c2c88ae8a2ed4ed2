"""The population step is O(1) in K (issue 36): it issues the same torch ops (kernel launches
on a GPU) for 1 member or 64, with members frozen or not, and nothing in `train_until` reads
the device from the host. Counted on the CPU with the profiler, the proxy for a GPU here; the
real GPU check (`torch.cuda.set_sync_debug_mode`) runs where a GPU is lent."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmarks._common import ops_per_step
from trainers.config import make_config
from trainers.population import Population

RESMLP = str(Path(__file__).resolve().parents[2] / "examples" / "resmlp.py") + ":build"
CASES = {
    "ring8 mlp": {"dataset": "ring8", "hidden": 16, "depth": 2, "batch_size": 32},
    "digits dcgan": {"dataset": "digits", "hidden": 4, "batch_size": 16, "n_critic": 2},
    "user resmlp": {"dataset": "ring8", "hidden": 16, "depth": 2, "batch_size": 32,
                    "model": RESMLP},
}

pytestmark = pytest.mark.usefixtures("one_thread", "classifier_cache")


def population(k: int, size: dict, loss: str = "wgan-gp", **extra) -> Population:
    cfgs = [make_config({"loss": loss, "steps": 1000, "eval_every": 1000, "eval_samples": 100,
                         "device": "cpu", "seed": s, "lr_schedule": "linear", **size, **extra})
            for s in range(k)]
    pop = Population(cfgs)
    pop.train_until(1)  # warm
    return pop


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_step_issues_the_same_ops_for_1_or_64_members(case):
    one, _ = ops_per_step(population(1, CASES[case]))
    many, _ = ops_per_step(population(64, CASES[case]))
    assert many == one, (one, many)


@pytest.mark.parametrize("loss,penalty", [("wgan-clip", "none"), ("bce-ns", "r1"),
                                          ("wgan", "lp")])
def test_every_loss_and_penalty_is_o1_in_k(loss, penalty):
    extra = {"penalty": penalty} if penalty != "none" else {}
    one, _ = ops_per_step(population(1, CASES["ring8 mlp"], loss, **extra))
    many, _ = ops_per_step(population(32, CASES["ring8 mlp"], loss, **extra))
    assert many == one


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_frozen_member_changes_no_op_and_nothing_reads_the_device(case):
    pop = population(8, CASES[case])
    before, syncs = ops_per_step(pop, steps=3)
    assert syncs == {}, syncs
    with torch.no_grad():
        next(pop.D.parameters())[3].fill_(math.nan)
    pop.train_until(25)  # the finite check at step 25 freezes member 3, on the device
    assert bool(pop.frozen[3]) and not pop._dead[3]  # the host hears at evaluation
    after, syncs = ops_per_step(pop, steps=3)
    assert after == before and syncs == {}, syncs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (none here)")
@pytest.mark.parametrize("case", sorted(CASES))
def test_no_host_sync_on_a_gpu(case):
    cfgs = [make_config({"loss": "wgan-gp", "steps": 1000, "eval_every": 1000,
                         "eval_samples": 100, "device": "cuda", "seed": s, **CASES[case]})
            for s in range(16)]
    pop = Population(cfgs)
    pop.train_until(2)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        pop.train_until(30)  # across a finite check (step 25)
    finally:
        torch.cuda.set_sync_debug_mode("default")
