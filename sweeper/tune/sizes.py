"""Whether a sweep's trials fit in memory, checked before any trial is built.

The space's largest trial (every sampled size at the top of its range, `largest_configs`)
is estimated on PyTorch's meta device (`trainers.memory`): first one member, which the model
probe is about to build on this machine, then once Ray is up the whole trial (its seeds) times
the trials that run at once, against this machine's RAM for a private local Ray, the largest
node's for a cluster, or a trial's share of the GPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper.tune.spaces import SIZE_FIELDS, largest_configs
from trainers.data import dataset_shape
from trainers.files import available_memory
from trainers.memory import PROCESS_BYTES, check_fits, estimate, gib
from trainers.models import model_name

if TYPE_CHECKING:
    from sweeper.tune.driver import SweepOptions

_FIX = "lower the space's sizes ({})"


def check_sweep_memory(opts: SweepOptions, concurrent: int = 0, *, local: bool = True,
                       fuse: int = 1) -> None:
    """`concurrent` = 0: one member on this machine (before the model probe); otherwise
    `concurrent` trials of `opts.seeds` x `fuse` members each, where the trials will run."""
    fix = _FIX.format(", ".join(SIZE_FIELDS))
    if concurrent:
        fix += ", --seeds, --fuse or --max-concurrent"
    for cfg in largest_configs(opts.space):
        sizes = ", ".join(f"{k}={getattr(cfg, k)}" for k in ("hidden", "depth", "batch_size"))
        shape = dataset_shape(cfg)
        model = model_name(cfg, shape)
        if not concurrent:
            check_fits(estimate(cfg, shape, 1), available_memory(), "available RAM",
                       what=f"one member of model {model} ({sizes})", fix=fix)
            continue
        est = estimate(cfg, shape, opts.seeds * fuse)
        what = (f"a trial of {opts.seeds} seeds" + (f" x {fuse} settings" if fuse > 1 else "")
                + f", model {model} ({sizes})")
        if opts.gpus_per_trial:
            total = _gpu_memory()
            if total:  # a GPU share is checked where the driver can see the GPU
                check_fits(est, int(total * opts.gpus_per_trial),
                           f"GPU memory share of a trial ({opts.gpus_per_trial:g} x "
                           f"{gib(total)})", what=what, fix=fix.replace(
                               "--max-concurrent", "raise --gpus-per-trial"))
        elif local:
            check_fits(est, available_memory(), "available RAM", copies=concurrent,
                       overhead=PROCESS_BYTES, what=what, fix=fix)
        else:
            check_fits(est, _largest_node_memory(), "memory of the cluster's largest node",
                       overhead=PROCESS_BYTES, what=what, fix=fix)


def members_that_fit(opts: SweepOptions, share: float) -> int:
    """How many members of the space's largest trial fit in `share` of a trial's GPU share
    (by the estimate; 1 when no GPU is visible from the driver)."""
    total = _gpu_memory() * opts.gpus_per_trial * share
    if not total:
        return 1
    per = 0
    for cfg in largest_configs(opts.space):
        est = estimate(cfg, dataset_shape(cfg), 1)
        per = max(per, est.per_member if est is not None else 0)
    return max(1, int(total // per)) if per else 1


def _gpu_memory() -> int:
    import torch

    if not torch.cuda.is_available():
        return 0
    return int(torch.cuda.get_device_properties(0).total_memory)


def _largest_node_memory() -> int:
    import ray

    return int(max((n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")),
                   default=0)) or (1 << 62)
