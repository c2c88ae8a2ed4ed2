"""Population training, the one training loop: K members of one shape as one computation.

A *member* is one setting with one seed; a single run (`trainers.loop.Trainer`) is a
population of one. Members share the loss, the penalty, the networks, the batch size,
n_critic, the budget and the evaluation schedule; they may differ in their seed and in the
continuous hyperparameters (lambda, clip value, penalty weight, learning rates, Adam betas),
which are per-member tensors. Stability needs many seeds, and K small networks trained one
after another leave most of a core (and nearly all of a GPU) idle; stacked they run as a few
large kernels.

The loop: n_critic critic steps on fresh real and (detached) fake batches, then one generator
step through a frozen critic; every loss and penalty is per member ([K], `trainers.losses`,
`trainers.penalties`), and their sum is backpropagated, so each member's gradient is its own.

A step issues the same ops for 1 member or 1,000 (each op is a kernel launch on a GPU): no
Python loop over members, no per-member random generator, no boolean indexing, and no
host-device synchronisation inside `train_until` (tests/trainers/test_population_ops.py).

How member j stays equal to a single run of its config (`trainers/reference.py`, the plain
PyTorch loop the tests hold it to):
- **Weights.** Member j is initialised as a single run is (global seed, then
  `build_models`), and the K members are stacked: any module through torch.func
  (`trainers.stacked.FuncStack`), or a hand-written stack where a registered model has a
  faster one (`trainers.batched.StackedMLP`, `trainers.stacked_conv`).
- **Randomness.** Counter-based (`trainers.rng`): a draw is a hash of the member's seed, the
  step and its index, so a member's batches depend only on its own seed, never on K or on
  the others, and all members' draws for a step are a few tensor ops.
- **Optimisers.** `torch.optim` takes one lr and one pair of betas per parameter group, so
  `BatchedAdam` and `BatchedRMSprop` reimplement `torch.optim.Adam` / `RMSprop`'s update
  with per-member hyperparameters.
- **Divergence.** A member whose losses become NaN/inf (or huge) or whose weights explode is
  frozen: its parameters, optimiser state and buffers (batch-norm statistics) stop changing
  (masked updates) and it reports `diverged = 1`. The others are computed by the same
  per-member kernels as before, so they continue bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainers import names, rng
from trainers.batched import BatchedAdam, BatchedRMSprop
from trainers.config import ConfigError, TrialConfig, make_config
from trainers.data import build_dataset
from trainers.losses import LOSSES as LOSS_CLASSES
from trainers.losses import make_loss
from trainers.models import build_models, stackers
from trainers.penalties import critic_grad_norms, interpolate, make_penalty
from trainers.quality import DEFAULT_RULE, SuccessRule, failed_metrics
from trainers.runtime import checkpoint_contents, read_checkpoint, resolve_device, save_atomic
from trainers.stacked import FuncStack

# Non-finite losses are looked for every this many generator steps: often enough to stop a
# diverged member early, rarely enough that the check costs nothing (it is a few device ops;
# the host learns of a freeze at the next evaluation).
_FINITE_CHECK_EVERY = 25
# A parameter this large means the member has blown up even if no NaN has appeared yet;
# healthy MLP/conv GAN weights stay orders of magnitude below it.
_WEIGHT_LIMIT = 1e5
# Likewise a loss this large: an unconstrained critic can reach 1e36 before overflowing to
# inf, long after the run stopped learning anything. Healthy GAN losses are O(1)-O(1e3).
_LOSS_LIMIT = 1e10
# Critic-side metrics (w_distance, grad_norm) use this many held-out samples at most.
_CRITIC_EVAL_BATCH = 2048

# What members must share (one batched computation) and what may differ between them.
SHARED = ("loss", "penalty", "dataset", "steps", "batch_size", "n_critic", "optimizer",
          "lr_schedule", "z_dim", "hidden", "depth", "activation", "init", "model", "eval_every",
          "eval_samples", "dataset_scale", "device", "data_root", "download", "fid_backend",
          "image_size")
PER_MEMBER = ("seed", "gp_lambda", "clip_value", "penalty_weight", "lr_g", "lr_d", "beta1",
              "beta2")


# ---------------------------------------------------------------------------- population
class Population:
    """K members trained in lockstep; `Trainer`'s interface, with per-member metrics.

    `stacking="generic"` batches even registered models through torch.func (for
    benchmarks/population.py, which compares the two forms)."""

    def __init__(self, configs: Sequence[TrialConfig], rule: SuccessRule = DEFAULT_RULE, *,
                 stacking: str = "auto") -> None:
        if not configs:
            raise ConfigError("a population needs at least one member")
        check_shared(configs)
        self.configs = list(configs)
        self.config = cfg = configs[0]
        self.k = len(configs)
        self.rule = rule
        self.device = dev = resolve_device(cfg.device)
        self.data = build_dataset(cfg, dev)
        self.G, self.D = _stack_members(configs, tuple(self.data.shape), stacking)
        self.G.to(dev)
        self.D.to(dev)
        self.keys = rng.member_keys([c.seed for c in configs], dev)
        self.layout = rng.NoiseLayout(cfg.n_critic, cfg.batch_size, cfg.z_dim,
                                      *self.data.noise_dims)

        def col(name: str) -> Tensor:
            return torch.tensor([float(getattr(c, name)) for c in configs], device=dev)

        self.lr_g, self.lr_d = col("lr_g"), col("lr_d")
        self.loss = make_loss(cfg.loss, **{f: col(f) for f in LOSS_CLASSES[cfg.loss].uses})
        self.penalty = make_penalty(cfg.penalty, col("penalty_weight"))
        if cfg.optimizer == "rmsprop":
            self.opt_g = BatchedRMSprop(list(self.G.parameters()))
            self.opt_d = BatchedRMSprop(list(self.D.parameters()))
        else:
            b1, b2 = col("beta1"), col("beta2")
            self.opt_g = BatchedAdam(list(self.G.parameters()), b1, b2)
            self.opt_d = BatchedAdam(list(self.D.parameters()), b1, b2)
        self.step = 0
        # Divergence (`frozen`) lives on the device, set by masks (reading it every step would
        # cost a GPU synchronisation per step); `_dead` is its host copy, refreshed at
        # evaluation.
        self.frozen = torch.zeros(self.k, dtype=torch.bool, device=dev)
        self.frozen_at = torch.zeros(self.k, dtype=torch.long, device=dev)
        self._dead = [False] * self.k
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self._loss_sum = torch.zeros(self.k, 2, device=dev)
        self._loss_count = 0
        self._make_eval_sets()

    # ------------------------------------------------------------------ the loop
    @property
    def done(self) -> bool:
        return all(self._dead) or self.step >= self.config.steps

    @property
    def member_steps(self) -> list[int]:
        """Each member's steps trained: a frozen (diverged) member's stopped where it froze."""
        return torch.where(self.frozen, self.frozen_at, self.step).tolist()

    def next_eval_step(self) -> int:
        every = self.config.eval_every
        return min((self.step // every + 1) * every, self.config.steps)

    def run(self, report: Callable[[int, Any], None] | None = None) -> Any:
        """Train to `steps` (or until every member diverged), evaluating every `eval_every`
        steps and passing each evaluation to `report(step, metrics)`; the final metrics
        (`evaluate()`'s: per member here, one dict for a `Trainer`)."""
        metrics = None
        for metrics in evaluations(self):
            if report is not None:
                report(self.step, metrics)
        return metrics

    def learning_rates(self) -> tuple[Tensor, Tensor]:
        """Per-member (lr_g, lr_d) [K] for the next generator step. The linear schedule is
        derived from the step alone, so a resumed run continues the same schedule."""
        cfg = self.config
        if cfg.lr_schedule != "linear":
            return self.lr_g, self.lr_d
        scale = 1.0 - self.step / cfg.steps
        return self.lr_g * scale, self.lr_d * scale

    def train_until(self, until: int) -> None:
        """Train every member to generator step `until` (a frozen member stands still).
        Nothing here reads the device: divergence is checked with masks every
        `_FINITE_CHECK_EVERY` steps and reaches the host at the next evaluation."""
        t0 = time.perf_counter()
        while self.step < until and not self.done:
            self._train_step()
            self.step += 1
            if self.step % _FINITE_CHECK_EVERY == 0:
                self._freeze(self._losses_blew_up())
        self.train_seconds += time.perf_counter() - t0

    def _train_step(self) -> None:
        cfg, G, D, loss, penalty = self.config, self.G, self.D, self.loss, self.penalty
        k, b = self.k, cfg.batch_size
        active = ~self.frozen
        lr_g, lr_d = self.learning_rates()
        noise = rng.step_noise(self.keys, self.layout, self.step)
        # Buffers (batch-norm statistics) change in every forward pass; a frozen member's
        # are put back after the step, like its weights.
        kept = [buf.clone() for buf in (*G.buffers(), *D.buffers())]
        eps_shape = (k, b) + (1,) * len(self.data.shape)
        for i in range(cfg.n_critic):
            real = self.data.from_noise(noise.real_u[:, i], noise.real_z[:, i])
            with torch.no_grad():
                fake = G(noise.fake_z[:, i])
            eps = noise.eps[:, i].reshape(eps_shape)
            loss_d = loss.critic_loss(D, real, fake, eps)
            if penalty is not None:
                loss_d = loss_d + penalty(D, real, fake, eps)
            self.opt_d.zero_grad()
            loss_d.sum().backward()
            self.opt_d.step(lr_d, active)
            loss.after_critic_step(D)
        D.requires_grad_(False)
        loss_g = loss.generator_loss(D(G(noise.gen_z)))
        self.opt_g.zero_grad()
        loss_g.sum().backward()
        self.opt_g.step(lr_g, active)
        D.requires_grad_(True)
        for buf, old in zip((*G.buffers(), *D.buffers()), kept, strict=True):
            buf.copy_(torch.where(active.view((-1,) + (1,) * (buf.dim() - 1)), buf, old))
        losses = torch.stack([loss_d.detach(), loss_g.detach()], 1)
        self._loss_sum += torch.where(active[:, None], losses, 0.0)  # a frozen member's stay
        self._loss_count += 1

    def _freeze(self, bad: Tensor) -> None:
        """Freeze the members where `bad` [K] holds, remembering the step (device ops)."""
        self.frozen_at = torch.where(bad & ~self.frozen, self.step, self.frozen_at)
        self.frozen = self.frozen | bad

    def _sync_dead(self) -> None:
        self._dead = self.frozen.tolist()

    def _losses_blew_up(self) -> Tensor:
        mean = self._loss_sum / max(1, self._loss_count)
        return ~torch.isfinite(mean).all(1) | (mean.abs().amax(1) > _LOSS_LIMIT)

    def _weights_exploded(self) -> Tensor:
        out = torch.zeros(self.k, dtype=torch.bool, device=self.device)
        for p in (*self.G.parameters(), *self.D.parameters()):
            out |= ~(p.detach().abs().flatten(1).amax(1) <= _WEIGHT_LIMIT)  # NaN counts too
        return out

    # ------------------------------------------------------------------ evaluation
    def _make_eval_sets(self) -> None:
        """Each member's fixed evaluation noise and critic batch, from its own evaluation
        stream (`rng.EVAL`): changing the evaluation schedule never changes training."""
        cfg = self.config
        self.eval_z = eval_noise(self.keys, cfg.eval_samples, cfg.z_dim)
        n = min(cfg.eval_samples, _CRITIC_EVAL_BATCH)
        draws = rng.step_noise(self.keys, rng.NoiseLayout(1, n, 1, *self.data.noise_dims), 1,
                               stream=rng.EVAL)
        self.eval_real = self.data.from_noise(draws.real_u[:, 0], draws.real_z[:, 0])
        self._eval_eps = draws.eps[:, 0].reshape((self.k, n) + (1,) * len(self.data.shape))

    def sample(self) -> Tensor:
        """[K, eval_samples, ...] samples from each member's fixed evaluation noise."""
        return self._generate(self.eval_z)

    @torch.no_grad()
    def _generate(self, z: Tensor) -> Tensor:
        """G([K, n, z_dim]) in eval mode: batch norm uses its running statistics."""
        self.G.eval()
        try:
            return torch.cat([self.G(chunk) for chunk in z.split(4096, dim=1)], dim=1)
        finally:
            self.G.train()

    def evaluate(self) -> list[dict[str, float]]:
        """Per-member metrics: data-side on `eval_samples` fakes, critic-side, mean losses."""
        t0 = time.perf_counter()
        means = self._loss_sum / max(1, self._loss_count)
        if self._loss_count:
            self._freeze(self._losses_blew_up())
        had_losses = self._loss_count > 0
        self._loss_sum.zero_()
        self._loss_count = 0
        fake = self._generate(self.eval_z)
        self._freeze(~torch.isfinite(fake).flatten(1).all(1) | self._weights_exploded())
        self._sync_dead()
        steps = self.member_steps
        critic = self._critic_metrics(fake)
        out = []
        for j in range(self.k):
            m: dict[str, float] = {names.STEP: float(steps[j])}
            if self._dead[j]:
                m.update({names.DIVERGED: 1.0, **failed_metrics(self.data.num_modes)})
            else:
                if had_losses:
                    m[names.LOSS_D], m[names.LOSS_G] = means[j].tolist()
                m.update(self.data.evaluate(fake[j], self.rule))
                m.update({k: v[j] for k, v in critic.items() if math.isfinite(v[j])})
                m[names.DIVERGED] = 0.0
            out.append(m)
        self.eval_seconds += time.perf_counter() - t0
        for m in out:  # each member's share, so that summing members gives the real cost
            m[names.TRAIN_SECONDS] = self.train_seconds / self.k
            m[names.EVAL_SECONDS] = self.eval_seconds / self.k
        return out

    def _critic_metrics(self, fake: Tensor) -> dict[str, list[float]]:
        real = self.eval_real
        fake = fake[:, : real.shape[1]]
        x_hat = interpolate(real, fake, self._eval_eps)
        out = {names.GRAD_NORM: critic_grad_norms(self.D, x_hat).mean(1).tolist()}
        if self.loss.wasserstein:
            with torch.no_grad():
                out[names.W_DISTANCE] = (self.D(real).flatten(1).mean(1)
                                         - self.D(fake).flatten(1).mean(1)).tolist()
        return out

    # ------------------------------------------------------------------ dropping members
    def keep(self, indices: Sequence[int]) -> Population:
        """A population of only these members, each exactly where it was (weights,
        optimiser state, divergence, step): successive halving drops the settings it stops,
        so the steps that follow cost less. Every stacked tensor's first dimension is the
        member, so the saved state is sliced and loaded into a population of the kept
        configs; each member's random stream depends on its own seed only, so the kept
        members train on as they would have."""
        idx = [int(i) for i in indices]
        if not idx or len(set(idx)) != len(idx) or not all(0 <= i < self.k for i in idx):
            raise ValueError(f"keep needs distinct member indices in [0, {self.k}), got {idx}")
        at = torch.tensor(idx)

        def rows(x: Any) -> Any:
            if isinstance(x, Tensor) and x.dim() > 0 and x.shape[0] == self.k:
                return x.index_select(0, at.to(x.device))
            if isinstance(x, dict):
                return {key: rows(v) for key, v in x.items()}
            if isinstance(x, list):
                return [rows(v) for v in x]
            return x

        state = self.state_dict()
        kept = {**rows({k: v for k, v in state.items() if k != "configs"}),
                "configs": [state["configs"][i] for i in idx]}
        # The time so far is shared by the K members; the kept ones carry their share of it,
        # so summing every member's seconds still gives what the population cost.
        for key in ("train_seconds", "eval_seconds"):
            kept[key] = state[key] * len(idx) / self.k
        pop = type(self)._new([self.configs[i] for i in idx], self.rule)
        pop.load_state_dict(kept)
        return pop

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs, as tensors and plain values (loadable with
        `torch.load(weights_only=True)`). No random state: the streams are counter-based."""
        return {"format": STATE_FORMAT, "configs": [c.to_dict() for c in self.configs],
                "step": self.step, "diverged": self.frozen.cpu(),
                "frozen_at": self.frozen_at.cpu(),
                "G": self.G.state_dict(), "D": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "loss_sum": self._loss_sum.cpu(), "loss_count": self._loss_count,
                "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.frozen = _tensor(state["diverged"], torch.bool, self.k).to(self.device)
        self.frozen_at = _tensor(state["frozen_at"], torch.long, self.k).to(self.device)
        self._sync_dead()
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self._loss_sum = _tensor(state["loss_sum"], torch.float32, self.k).to(self.device)
        self._loss_count = int(state["loss_count"])
        self.train_seconds = float(state["train_seconds"])
        self.eval_seconds = float(state["eval_seconds"])

    def save(self, path: str | Path) -> None:
        save_atomic(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None,
             rule: SuccessRule = DEFAULT_RULE) -> Population:
        state = read_checkpoint(path)
        with checkpoint_contents(path):
            return cls.from_state(state, device, rule)

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str | None = None,
                   rule: SuccessRule = DEFAULT_RULE) -> Population:
        if state.get("format") != STATE_FORMAT:
            raise ConfigError("it was written by an older gan-sweeper, whose random streams "
                              "differ from this one's; drop --resume to start over")
        cfgs = [make_config({**c, **({"device": device} if device else {})},
                            fill_loss_defaults=False) for c in state["configs"]]
        pop = cls._new(cfgs, rule)
        pop.load_state_dict(state)
        return pop

    @classmethod
    def _new(cls, configs: list[TrialConfig], rule: SuccessRule) -> Population:
        return cls(configs, rule)


# Checkpoints carry this; one of another format (the per-member torch.Generator states of
# before the counter-based streams) cannot continue the same run.
STATE_FORMAT = 2


def _tensor(x: Any, dtype: torch.dtype, k: int) -> Tensor:
    """A saved per-member tensor, checked: the wrong type or length is a ValueError."""
    if not isinstance(x, Tensor) or len(x) != k:
        raise ValueError(f"a per-member tensor of length {k} was expected, got {type(x).__name__}")
    return x.to(dtype)


def eval_noise(keys: Tensor, n: int, z_dim: int) -> Tensor:
    """[K, n, z_dim]: each member's fixed evaluation noise (`trainers.reference` draws its
    own through this too)."""
    return rng.normal(keys, rng.EVAL, 0, n * z_dim).view(len(keys), n, z_dim)


def _stack_members(configs: Sequence[TrialConfig], shape: tuple[int, ...],
                   stacking: str) -> tuple[nn.Module, nn.Module]:
    """Build each member as its single run would (global seed, then `build_models`) and
    stack them: the model's hand-written stack if it has one, else torch.func's."""
    gs, ds = [], []
    for c in configs:
        torch.manual_seed(c.seed)
        g, d = build_models(c, shape)
        gs.append(g)
        ds.append(d)
    hand = stackers(configs[0], shape) if stacking == "auto" else None
    if hand is not None:
        return hand[0](gs), hand[1](ds)
    return FuncStack(gs), FuncStack(ds)


def check_shared(configs: Sequence[TrialConfig]) -> None:
    """One line naming the first field that members must share but do not."""
    reason = _unshared(configs)
    if reason:
        raise ConfigError(reason)


def _unshared(configs: Sequence[TrialConfig]) -> str | None:
    first = configs[0]
    for c in configs[1:]:
        for f in SHARED:
            if getattr(c, f) != getattr(first, f):
                return (f"population members must share {f} ({getattr(first, f)!r} vs "
                        f"{getattr(c, f)!r}); only {', '.join(PER_MEMBER)} may differ")
    return None


def batchable(configs: Sequence[TrialConfig]) -> str | None:
    """None if these members can train as one population, else one line saying why not."""
    if not configs:
        return "a population needs at least one member"
    return _unshared(configs)


def evaluations(members: Any, *, chunk: int = 0,
                trained: Callable[[], None] | None = None) -> Iterator[Any]:
    """The outer training loop, shared by every caller (`Population.run`, a sweep trial,
    `train`, `stable --confirm`): train `members` (a `Population` or
    `trainers.members.Populations`) to their next evaluation step, evaluate, and yield the
    metrics; it ends after the evaluation at which every member is done (there is always
    at least one). `trained()` is called after each stretch of training: each interval, or
    with `chunk` > 0 each piece up to the next multiple of `chunk` (a progress bar, a
    checkpoint). Pieces change nothing in the result: each member draws from its own
    counter-based generators step by step."""
    while True:
        target = members.next_eval_step()
        while members.step < target and not members.done:
            piece = (members.step // chunk + 1) * chunk if chunk > 0 else target
            members.train_until(min(target, piece))
            if trained is not None:
                trained()
        yield members.evaluate()
        if members.done:
            return
