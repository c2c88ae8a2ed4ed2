"""Counter-based random numbers: every member's draws for a whole step in a handful of ops.

A population of K members used to draw from K `torch.Generator`s, one call per member per
draw: about 47 extra ops (kernel launches on a GPU) per member per step. Here a random number
is a hash of (member key, counter, index), so the draws of all members for one step are a few
elementwise ops on one [K, n] tensor, whatever K is, and member j's numbers depend on its own
seed alone: never on K, on the other members, or on the device's generator state. Nothing
needs saving either: the counter is the step, so a resumed run draws what it would have.

The hash is SplitMix64's finaliser (Steele, Lea & Flood 2014; Stafford's "Mix13"), in int64
tensor ops. Multiplication wraps modulo 2^64 as in C (tests/trainers/test_rng.py checks it
against exact Python integers); right shifts are made logical with a mask. Draws:

    value(key, counter, i) = mix(mix(key ^ mix(counter)) ^ mix(i))

The inner part is one 64-bit word per (member, counter), the outer mix hashes it with the
index, so two members' streams never run in step even where those words happen to coincide.
Uniforms take the top 24 bits (exact in float32, in [0, 1)); normals are Box-Muller pairs
(cos and sin halves), so |z| <= sqrt(2 ln 2^24) = 5.77 (P(|z| > 5.77) = 8e-9 for a true
normal: no GAN noise misses it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
# SplitMix64's multipliers, as the signed int64 values of the same bits.
_C1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_C2 = 0x94D049BB133111EB - (1 << 64)
_24 = 2.0 ** -24

# Streams of one member, each counted from 0 by its own counter.
TRAIN = 0  # one block per generator step: the step's real batches, noise and eps
EVAL = 1  # the fixed evaluation noise, real batch and eps (counter 0)
_STREAMS = 4


def _srl(x: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 bits (torch's >> keeps the sign)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def mix(x: Tensor) -> Tensor:
    """SplitMix64's finaliser on int64 tensors (bijective on 64-bit words)."""
    x = (x ^ _srl(x, 30)) * _C1
    x = (x ^ _srl(x, 27)) * _C2
    return x ^ _srl(x, 31)


def mix_int(x: int) -> int:
    """`mix` on one Python integer, exactly (the reference the tensor version is held to)."""
    x &= _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    x ^= x >> 31
    return x - (1 << 64) if x >> 63 else x


def member_keys(seeds: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
    """[K] int64 keys, one per member seed (a bijection: distinct seeds, distinct keys)."""
    return torch.tensor([mix_int(s * _GOLDEN) for s in seeds], dtype=torch.int64, device=device)


_INDEX_CACHE: dict[tuple[int, str], Tensor] = {}


def _mixed_index(n: int, device: torch.device) -> Tensor:
    """mix(0 .. n-1), cached per size and device: built once, reused every step."""
    key = (n, str(device))
    out = _INDEX_CACHE.get(key)
    if out is None:
        out = mix(torch.arange(n, dtype=torch.int64, device=device))
        if len(_INDEX_CACHE) > 64:
            _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = out
    return out


def bits(keys: Tensor, stream: int, counter: int, n: int) -> Tensor:
    """[K, n] random int64 words: n per member for (stream, counter)."""
    c = mix_int(counter * _STREAMS + stream)
    block = mix(keys ^ c)  # [K]: one word per member for this counter
    return mix(block[:, None] ^ _mixed_index(n, keys.device)[None, :])


def to_uniform(words: Tensor) -> Tensor:
    """Top 24 bits as float32 in [0, 1)."""
    return _srl(words, 40).to(torch.float32) * _24


def to_normal(u: Tensor) -> Tensor:
    """Standard normals from uniforms [..., 2m] by Box-Muller: m cos values, then m sin."""
    half = u.shape[-1] // 2
    r = torch.sqrt(-2.0 * torch.log1p(-u[..., :half]))  # 1 - u in (0, 1]: log never -inf
    theta = (2 * math.pi) * u[..., half:2 * half]
    return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=-1)


def uniform(keys: Tensor, stream: int, counter: int, n: int) -> Tensor:
    return to_uniform(bits(keys, stream, counter, n))


def normal(keys: Tensor, stream: int, counter: int, n: int) -> Tensor:
    return to_normal(uniform(keys, stream, counter, n + n % 2))[:, :n]


@dataclass(frozen=True)
class NoiseLayout:
    """How many numbers one step (or one evaluation) draws per member, and their order.

    Per critic iteration: the real batch's uniforms and normals (what `Dataset.from_noise`
    turns into samples), the fakes' latent noise and the interpolation eps (drawn always, so
    the other draws do not depend on whether a penalty needs them); then the generator step's
    latent noise. All uniforms come first in the block, then all normals."""

    n_critic: int
    batch: int
    z_dim: int
    data_uniforms: int  # per real sample
    data_normals: int  # per real sample

    @property
    def _uniforms(self) -> int:
        return self.n_critic * self.batch * (self.data_uniforms + 1)

    @property
    def _normals(self) -> int:
        per_iter = self.batch * (self.data_normals + self.z_dim)
        return self.n_critic * per_iter + self.batch * self.z_dim


@dataclass(frozen=True)
class StepNoise:
    """One step's draws for K members: [K, n_critic, B, ...] for the critic iterations (index
    the critic iteration with [:, i]), [K, B, z_dim] for the generator step."""

    real_u: Tensor  # [K, n_critic, B, data_uniforms]
    real_z: Tensor  # [K, n_critic, B, data_normals]
    fake_z: Tensor  # [K, n_critic, B, z_dim]
    eps: Tensor  # [K, n_critic, B]
    gen_z: Tensor  # [K, B, z_dim]


def step_noise(keys: Tensor, layout: NoiseLayout, step: int, stream: int = TRAIN) -> StepNoise:
    """Every member's draws for generator step `step` (0-based), in a fixed number of ops."""
    lay = layout
    nu, nz = lay._uniforms, lay._normals
    u = to_uniform(bits(keys, stream, step, nu + nz + nz % 2))
    k, c, b = len(keys), lay.n_critic, lay.batch
    uni, nor = u[:, :nu], to_normal(u[:, nu:])[:, :nz]
    real_u, eps = uni.view(k, c, b, lay.data_uniforms + 1).split([lay.data_uniforms, 1], -1)
    per_iter = nor[:, : c * b * (lay.data_normals + lay.z_dim)]
    real_z, fake_z = per_iter.view(k, c, b, lay.data_normals + lay.z_dim).split(
        [lay.data_normals, lay.z_dim], -1)
    gen_z = nor[:, c * b * (lay.data_normals + lay.z_dim):].view(k, b, lay.z_dim)
    return StepNoise(real_u, real_z, fake_z, eps.squeeze(-1), gen_z)
