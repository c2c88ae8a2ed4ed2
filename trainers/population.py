"""Population training, the one training loop: K members of one shape as one computation.

A *member* is one setting with one seed; a single run (`trainers.loop.Trainer`) is a
population of one. Members share the loss, the penalty, the architecture, the batch size,
n_critic, the budget and the evaluation schedule; they may differ in their seed and in the
continuous hyperparameters (lambda, clip value, penalty weight, learning rates, Adam betas),
which are per-member tensors. Stability needs many seeds, and K small networks trained one
after another leave most of a core (and nearly all of a GPU) idle; stacked they run as a few
large kernels.

The loop: n_critic critic steps on fresh real and (detached) fake batches, then one generator
step through a frozen critic; every loss and penalty is per member ([K], `trainers.losses`,
`trainers.penalties`), and their
sum is backpropagated, so each member's gradient is its own.

How member j stays equal to a single run of its config (`trainers/reference.py`, the plain
PyTorch loop the tests hold it to):
- **Weights.** Member j is initialised as a single run is (global seed, then
  `build_models`) and stacked: MLP layers into [K, in, out] tensors, one `torch.baddbmm` per
  layer (`trainers.batched`); conv nets into grouped convolutions (`trainers.stacked_conv`).
- **Randomness.** Every member has its own `torch.Generator` seeded with its seed, and draws
  from it in a fixed order (real batch, noise, interpolation eps; then the generator step's
  noise). So a member's batches depend only on its own seed, never on K or on the others.
- **Optimisers.** `torch.optim` takes one lr and one pair of betas per parameter group, so
  `BatchedAdam` and `BatchedRMSprop` reimplement `torch.optim.Adam` / `RMSprop`'s update
  with per-member hyperparameters.
- **Divergence.** A member whose losses become NaN/inf (or huge) or whose weights explode is
  frozen: its parameters, optimiser state and batch-norm statistics stop changing and it
  reports `diverged = 1`. The others are computed by the same per-member kernels as before,
  so they continue bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trainers import names
from trainers.batched import BatchedAdam, BatchedRMSprop, StackedMLP
from trainers.config import ConfigError, TrialConfig, make_config
from trainers.data import build_dataset
from trainers.losses import LOSSES as LOSS_CLASSES
from trainers.losses import make_loss
from trainers.models import build_models
from trainers.penalties import critic_grad_norms, interpolate, interpolation_eps, make_penalty
from trainers.quality import DEFAULT_RULE, SuccessRule, failed_metrics
from trainers.runtime import checkpoint_contents, read_checkpoint, resolve_device, save_atomic
from trainers.stacked_conv import StackedConvCritic, StackedConvGenerator

# Non-finite losses are looked for every this many generator steps: often enough to stop a
# diverged member early, rarely enough that the check (a device sync on GPU) costs nothing.
_FINITE_CHECK_EVERY = 25
# A parameter this large means the member has blown up even if no NaN has appeared yet;
# healthy MLP/conv GAN weights stay orders of magnitude below it.
_WEIGHT_LIMIT = 1e5
# Likewise a loss this large: an unconstrained critic can reach 1e36 before overflowing to
# inf, long after the run stopped learning anything. Healthy GAN losses are O(1)-O(1e3).
_LOSS_LIMIT = 1e10
# Critic-side metrics (w_distance, grad_norm) use this many held-out samples at most.
_CRITIC_EVAL_BATCH = 2048
# The evaluation noise and interpolation RNG are seeded apart from training, so changing the
# evaluation schedule never changes the training trajectory.
_EVAL_SEED_OFFSET = 7_919

# What members must share (one batched computation) and what may differ between them.
SHARED = ("loss", "penalty", "dataset", "steps", "batch_size", "n_critic", "optimizer",
          "lr_schedule", "z_dim", "hidden", "depth", "activation", "init", "eval_every",
          "eval_samples", "dataset_scale", "device", "data_root", "download", "fid_backend")
PER_MEMBER = ("seed", "gp_lambda", "clip_value", "penalty_weight", "lr_g", "lr_d", "beta1",
              "beta2")


# ---------------------------------------------------------------------------- population
class Population:
    """K members trained in lockstep; `Trainer`'s interface, with per-member metrics."""

    def __init__(self, configs: Sequence[TrialConfig], rule: SuccessRule = DEFAULT_RULE) -> None:
        if not configs:
            raise ConfigError("a population needs at least one member")
        check_shared(configs)
        self.configs = list(configs)
        self.config = cfg = configs[0]
        self.k = len(configs)
        self.rule = rule
        self.device = resolve_device(cfg.device)
        self.data = build_dataset(cfg, self.device)
        gs, ds = [], []
        for c in configs:
            torch.manual_seed(c.seed)  # as Trainer: the member's weights depend on its seed
            g, d = build_models(c, self.data)
            gs.append(g)
            ds.append(d)
        if self.data.kind == "image":
            self.G = StackedConvGenerator.stack(gs).to(self.device)
            self.D = StackedConvCritic.stack(ds).to(self.device)
        else:
            self.G = StackedMLP.stack(gs).to(self.device)
            self.D = StackedMLP.stack(ds).to(self.device)
        self.gens = [torch.Generator(device=self.device).manual_seed(c.seed) for c in configs]

        def col(name: str) -> Tensor:
            return torch.tensor([float(getattr(c, name)) for c in configs], device=self.device)

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
        self.member_steps = [0] * self.k  # a frozen (diverged) member's step stops
        self.member_diverged = torch.zeros(self.k, dtype=torch.bool, device=self.device)
        # The same flags on the host, updated only where divergence is checked: reading the
        # device tensor every step would cost a GPU synchronisation per step.
        self._dead = [False] * self.k
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self._loss_sum = torch.zeros(self.k, 2, device=self.device)
        self._loss_count = 0
        self._make_eval_sets()

    # ------------------------------------------------------------------ the loop
    @property
    def done(self) -> bool:
        return all(self._dead) or self.step >= self.config.steps

    def next_eval_step(self) -> int:
        every = self.config.eval_every
        return min((self.step // every + 1) * every, self.config.steps)

    def run(self, report: Callable[[int, Any], None] | None = None) -> Any:
        """Train to `steps` (or until every member diverged), evaluating every `eval_every`
        steps and passing each evaluation to `report(step, metrics)`; the final metrics
        (`evaluate()`'s: per member here, one dict for a `Trainer`)."""
        metrics = None
        while metrics is None or not self.done:
            self.train_until(self.next_eval_step())
            metrics = self.evaluate()
            if report is not None:
                report(self.step, metrics)
        return metrics

    def learning_rates(self) -> tuple[Tensor, Tensor]:
        """Per-member (lr_g, lr_d) [K] for the next generator step. The linear schedule is
        derived from the step alone, so a resumed run continues the same schedule."""
        cfg = self.config
        scale = 1.0 - self.step / cfg.steps if cfg.lr_schedule == "linear" else 1.0
        return self.lr_g * scale, self.lr_d * scale

    def _draw(self, fn) -> Tensor:
        return torch.stack([fn(g) for g in self.gens])

    def train_until(self, until: int) -> None:
        cfg, G, D = self.config, self.G, self.D
        b, z = cfg.batch_size, cfg.z_dim
        dev = self.device
        penalty = self.penalty
        gp = self.loss.needs_interpolates or (penalty is not None and penalty.needs_interpolates)
        sample_dims = len(self.data.shape)
        t0 = time.perf_counter()
        while self.step < until and not self.done:
            lr_g, lr_d = self.learning_rates()
            frozen = self.member_diverged if any(self._dead) else None
            # Batch-norm running statistics change in every forward pass: a frozen member's
            # are put back after the step, like its weights.
            kept = [buf[frozen].clone() for buf in G.buffers()] if frozen is not None else []
            for _ in range(cfg.n_critic):
                real = self._draw(lambda g: self.data.sample(b, g))
                noise = self._draw(lambda g: torch.randn(b, z, generator=g, device=dev))
                eps = (self._draw(lambda g: interpolation_eps(b, sample_dims, g, dev))
                       if gp else None)
                with torch.no_grad():
                    fake = G(noise)
                loss_d = self.loss.critic_loss(D, real, fake, eps)
                if penalty is not None:
                    loss_d = loss_d + penalty(D, real, fake, eps)
                self.opt_d.zero_grad()
                loss_d.sum().backward()
                self.opt_d.step(lr_d, frozen)
                self.loss.after_critic_step(D)
            noise = self._draw(lambda g: torch.randn(b, z, generator=g, device=dev))
            D.requires_grad_(False)
            loss_g = self.loss.generator_loss(D(G(noise)))
            self.opt_g.zero_grad()
            loss_g.sum().backward()
            self.opt_g.step(lr_g, frozen)
            D.requires_grad_(True)
            for buf, old in zip(G.buffers(), kept, strict=False):
                buf[frozen] = old
            losses = torch.stack([loss_d.detach(), loss_g.detach()], 1)
            if frozen is not None:  # a frozen member's loss sums stay as they were
                losses = losses.masked_fill(frozen[:, None], 0.0)
            self._loss_sum += losses
            self._loss_count += 1
            self.step += 1
            for j, dead in enumerate(self._dead):
                if not dead:
                    self.member_steps[j] = self.step
            if self.step % _FINITE_CHECK_EVERY == 0:
                self._mark_diverged(self._losses_blew_up())
        self.train_seconds += time.perf_counter() - t0

    def _mark_diverged(self, bad: Tensor) -> None:
        self.member_diverged |= bad
        self._dead = self.member_diverged.tolist()

    def _losses_blew_up(self) -> Tensor:
        mean = self._loss_sum / max(1, self._loss_count)
        return ~torch.isfinite(mean).all(1) | (mean.abs().amax(1) > _LOSS_LIMIT)

    def _weights_exploded(self) -> Tensor:
        out = torch.zeros(self.k, dtype=torch.bool, device=self.device)
        for p in (*self.G.parameters(), *self.D.parameters()):
            out |= p.detach().abs().flatten(1).amax(1) > _WEIGHT_LIMIT
        return out

    # ------------------------------------------------------------------ evaluation
    def _make_eval_sets(self) -> None:
        cfg = self.config
        zs, reals, states = [], [], []
        for c in self.configs:  # each member's evaluation stream, seeded apart from training
            g = torch.Generator(device=self.device).manual_seed(c.seed + _EVAL_SEED_OFFSET)
            states.append(g.get_state())
            zs.append(torch.randn(cfg.eval_samples, cfg.z_dim, generator=g, device=self.device))
            reals.append(self.data.sample(min(cfg.eval_samples, _CRITIC_EVAL_BATCH), g))
        self.eval_z, self.eval_real, self._eval_states = torch.stack(zs), torch.stack(reals), \
            states

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
            self._mark_diverged(self._losses_blew_up())
        had_losses = self._loss_count > 0
        self._loss_sum.zero_()
        self._loss_count = 0
        fake = self._generate(self.eval_z)
        bad = ~torch.isfinite(fake).flatten(1).all(1) | self._weights_exploded()
        self._mark_diverged(bad)
        critic = self._critic_metrics(fake)
        out = []
        for j in range(self.k):
            m: dict[str, float] = {names.STEP: float(self.member_steps[j])}
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
        eps = []
        for state in self._eval_states:  # each member's evaluation stream, as in a single run
            g = torch.Generator(device=self.device)
            g.set_state(state)
            eps.append(interpolation_eps(real.shape[1], len(self.data.shape), g, self.device))
        x_hat = interpolate(real, fake, torch.stack(eps))
        out = {names.GRAD_NORM: critic_grad_norms(self.D, x_hat).mean(1).tolist()}
        if self.loss.wasserstein:
            with torch.no_grad():
                out[names.W_DISTANCE] = (self.D(real).flatten(1).mean(1)
                                         - self.D(fake).flatten(1).mean(1)).tolist()
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"configs": [c.to_dict() for c in self.configs], "step": self.step,
                "member_steps": list(self.member_steps), "diverged": self.member_diverged.cpu(),
                "G": self.G.state_dict(), "D": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "gens": [g.get_state() for g in self.gens], "loss_sum": self._loss_sum.cpu(),
                "loss_count": self._loss_count, "train_seconds": self.train_seconds,
                "eval_seconds": self.eval_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.member_steps = [int(s) for s in state["member_steps"]]
        self.member_diverged = state["diverged"].to(self.device)
        self._dead = self.member_diverged.tolist()
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for g, s in zip(self.gens, state["gens"], strict=True):
            g.set_state(s)
        self._loss_sum = state["loss_sum"].to(self.device)
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
        cfgs = [make_config({**c, **({"device": device} if device else {})},
                            fill_loss_defaults=False) for c in state["configs"]]
        pop = cls._new(cfgs, rule)
        pop.load_state_dict(state)
        return pop

    @classmethod
    def _new(cls, configs: list[TrialConfig], rule: SuccessRule) -> Population:
        return cls(configs, rule)


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
