"""The counter-based streams (trainers/rng.py): exact against Python integers, independent of
K and of the other members, and uniform and normal by the usual tests."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

from trainers import rng


def test_mix_is_splitmix64_exactly_with_wrapping_multiplication():
    # torch's int64 multiply must wrap modulo 2^64 as C does; this holds it to exact integers.
    r = random.Random(0)
    xs = [r.randrange(-(1 << 63), 1 << 63) for _ in range(2000)] + [0, 1, -1, (1 << 63) - 1,
                                                                   -(1 << 63)]
    got = rng.mix(torch.tensor(xs, dtype=torch.int64)).tolist()
    assert got == [rng.mix_int(x) for x in xs]


def test_a_members_draws_do_not_depend_on_k_or_the_others():
    keys = rng.member_keys([5, 0, 1, 2, 7])
    alone = rng.member_keys([7])
    lay = rng.NoiseLayout(n_critic=3, batch=16, z_dim=4, data_uniforms=1, data_normals=2)
    for step in (0, 1, 1000):
        many, one = rng.step_noise(keys, lay, step), rng.step_noise(alone, lay, step)
        for name in ("real_u", "real_z", "fake_z", "eps", "gen_z"):
            assert torch.equal(getattr(many, name)[4], getattr(one, name)[0]), name


def test_shapes_of_one_steps_draws():
    lay = rng.NoiseLayout(n_critic=5, batch=8, z_dim=3, data_uniforms=3, data_normals=0)
    n = rng.step_noise(rng.member_keys([0, 1]), lay, 0)
    assert n.real_u.shape == (2, 5, 8, 3) and n.real_z.shape == (2, 5, 8, 0)
    assert n.fake_z.shape == (2, 5, 8, 3) and n.eps.shape == (2, 5, 8)
    assert n.gen_z.shape == (2, 8, 3)


def test_uniforms_are_uniform_and_in_range():
    u = rng.uniform(rng.member_keys([3]), rng.TRAIN, 0, 200_000)[0].double().numpy()
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.003 and abs(u.var() - 1 / 12) < 0.002
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_normals_are_standard_normal():
    z = rng.normal(rng.member_keys([3]), rng.TRAIN, 1, 200_001)[0].double().numpy()
    assert len(z) == 200_001
    assert abs(z.mean()) < 0.01 and abs(z.var() - 1) < 0.01
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert np.abs(z).max() <= math.sqrt(2 * math.log(2 ** 24)) + 1e-4  # the 24-bit tail


@pytest.mark.parametrize("what", ["seeds", "steps", "streams"])
def test_different_seeds_steps_and_streams_are_uncorrelated(what):
    n = 100_000
    if what == "seeds":
        a, b = rng.uniform(rng.member_keys([0, 1]), rng.TRAIN, 0, n)
    elif what == "steps":
        keys = rng.member_keys([0])
        a, b = rng.uniform(keys, rng.TRAIN, 0, n)[0], rng.uniform(keys, rng.TRAIN, 1, n)[0]
    else:
        keys = rng.member_keys([0])
        a, b = rng.uniform(keys, rng.TRAIN, 0, n)[0], rng.uniform(keys, rng.EVAL, 0, n)[0]
    r = np.corrcoef(a.double().numpy(), b.double().numpy())[0, 1]
    assert abs(r) < 4 / math.sqrt(n)  # 4 standard errors
    # neighbouring draws of one stream too
    x = a.double().numpy()
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 4 / math.sqrt(n)


def test_distinct_seeds_give_distinct_keys():
    keys = rng.member_keys(range(100_000))
    assert len(torch.unique(keys)) == 100_000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (none here)")
def test_the_same_numbers_on_a_gpu():
    keys = rng.member_keys([0, 9, 123])
    lay = rng.NoiseLayout(n_critic=2, batch=64, z_dim=8, data_uniforms=1, data_normals=2)
    cpu, gpu = rng.step_noise(keys, lay, 17), rng.step_noise(keys.cuda(), lay, 17)
    assert torch.equal(cpu.real_u, gpu.real_u.cpu())
    torch.testing.assert_close(cpu.gen_z, gpu.gen_z.cpu(), rtol=1e-5, atol=1e-6)
