"""What a population will need in memory, estimated before anything is allocated.

Every size option is checked against its range, but ranges cannot see products: `--hidden
8192 --depth 16` is two billion weights per member, and `--seeds 1000` multiplies that.
Such a run used to allocate until the machine killed it. Here the networks are built on
PyTorch's meta device (shapes only, no storage, milliseconds even for billions of weights),
one probe forward counts the activations per sample, and the total is compared with what the
device has: one line naming the estimate, the limit and what to lower, before any weight
exists. (A model of at most `_REAL_PROBE_PARAMS` weights is probed on the CPU instead: its
weights cost little, and the first meta forward imports torch._dynamo, about a second of
every sweep's start-up.)

The estimate, per member, in float32:
    weights, gradients and optimiser slots     4 x params x (2 + slots: Adam 2, RMSprop 1)
    one training step's activations            batch x (generator + 3 x critic) x 2
                                               (real, fake and interpolates go through the
                                               critic; backward keeps about as much again)
    an evaluation                              eval_samples x (sample + widest layer)
It is meant to be near, not exact: `benchmarks/memory_estimate.py` compares it with the peak
RSS of real runs. Only what clearly cannot fit is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from trainers.errors import ConfigError
from trainers.files import available_memory

if TYPE_CHECKING:
    from trainers.config import TrialConfig

_FLOAT = 4  # bytes; the population trains in float32
_REAL_PROBE_PARAMS = 4_000_000  # 16 MB of weights
_SLOTS = {"adam": 2, "rmsprop": 1}
# What one trial process needs besides its population: torch, the data, MLflow, Ray's worker
# (a ring8 trial process peaks at about 820 MiB RSS: docs/results.md section 4, "Memory").
PROCESS_BYTES = 800 << 20


@dataclass(frozen=True)
class MemoryEstimate:
    params: int  # weights of one member (generator and critic)
    state_bytes: int  # weights, gradients, optimiser slots: one member
    step_bytes: int  # one training step's activations: one member
    eval_bytes: int  # one evaluation's buffers: one member
    members: int

    @property
    def per_member(self) -> int:
        return self.state_bytes + max(self.step_bytes, self.eval_bytes)

    @property
    def total(self) -> int:
        return self.members * self.per_member


def _leaf_outputs(net: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(sum, max) of the output elements of `net`'s leaf modules for the batch `x`."""
    sizes: list[int] = []

    def hook(_m, _i, out) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel())

    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        out = net(x)
    finally:
        for h in handles:
            h.remove()
    if not sizes:  # a forward written with functions alone: at least its output
        sizes.append(out.numel())
    return sum(sizes), max(sizes)


def estimate(cfg: TrialConfig, shape: tuple[int, ...],
             members: int = 1) -> MemoryEstimate | None:
    """The memory `members` members of `cfg` need (see the module's doc); None when the
    networks cannot be built on the meta device (the real probe, `trainers.model_check`,
    then names what is wrong). A model too large for the CPU probe whose forward needs real
    numbers (a user's code calling `.item()`) is estimated from its weights alone."""
    from trainers.models import build_models

    n = 2  # samples in the probe; activations scale linearly with it
    with torch.device("meta"):
        try:
            g, d = build_models(cfg, tuple(shape))
        except Exception:  # noqa: BLE001 - a model that cannot build fails the real probe
            return None
    params = sum(p.numel() for p in (*g.parameters(), *d.parameters()))
    where = "cpu" if params <= _REAL_PROBE_PARAMS else "meta"
    # The CPU build draws its initial weights: from a forked generator, so a caller's
    # draws do not depend on whether it checked the size first.
    with torch.random.fork_rng(devices=[]), torch.device(where):
        try:
            if where == "cpu":
                g, d = build_models(cfg, tuple(shape))
            with torch.no_grad():
                g_sum, g_max = _leaf_outputs(g, torch.zeros(n, cfg.z_dim))
                c_sum, _ = _leaf_outputs(d, torch.zeros(n, *shape))
        except Exception:  # noqa: BLE001 - the real probe names a forward that fails
            g_sum = g_max = c_sum = 0
    g_sum, g_max, c_sum = g_sum // n, g_max // n, c_sum // n
    sample = 1
    for s in shape:
        sample *= int(s)
    slots = _SLOTS.get(cfg.optimizer, 2)
    return MemoryEstimate(
        params=params,
        state_bytes=_FLOAT * params * (2 + slots),
        step_bytes=_FLOAT * cfg.batch_size * (g_sum + 3 * c_sum) * 2,
        eval_bytes=_FLOAT * cfg.eval_samples * (sample + g_max),
        members=members)


def device_memory(device: torch.device) -> tuple[int, str]:
    """(bytes a run could still use on `device`, what that limit is called)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free), f"free memory of {device}"
    return available_memory(), "available RAM"


def gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 28 else f"{n / (1 << 20):.0f} MiB"


SIZE_FIX = "lower --seeds, --hidden, --depth, --batch-size or --eval-samples"


def check_fits(est: MemoryEstimate | None, limit: int, where: str, *, copies: int = 1,
               overhead: int = 0, what: str = "", fix: str = SIZE_FIX) -> None:
    """One line if `copies` x (`est` + `overhead`) cannot fit in `limit` bytes (`where` names
    that limit). `copies` are concurrent trials, each a process costing `overhead` more."""
    if est is None:
        return
    need = copies * (est.total + overhead)
    if need <= limit:
        return
    who = what or (f"{est.members} members" if est.members > 1 else "this run")
    times = (f"{copies} concurrent trials x {gib(est.total + overhead)}" if copies > 1
             else f"{gib(est.per_member)} per member" if est.members > 1 else "")
    raise ConfigError(
        f"{who} would need about {gib(need)}{f' ({times})' if times else ''}: "
        f"{est.params:,} weights per member with their gradients and optimiser state, and one "
        f"step's activations; the {where} is {gib(max(limit, 0))}; {fix}")


def check_run_fits(cfg: TrialConfig, shape: tuple[int, ...], members: int = 1) -> None:
    """`sweeper train` and `stable --confirm`: `members` members of `cfg` on its device."""
    from trainers.runtime import resolve_device

    est = estimate(cfg, shape, members)
    if est is not None:
        check_fits(est, *device_memory(resolve_device(cfg.device)))
