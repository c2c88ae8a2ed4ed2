"""Population training: K members of one shape trained as one batched computation.

A *member* is one setting with one seed. Members share the loss, the architecture, the batch
size, n_critic, the budget and the evaluation schedule; they may differ in their seed and in
the continuous hyperparameters (lambda, clip value, learning rates, Adam betas), which are
per-member tensors. Stability needs many seeds, and K small networks trained one after another
leave most of a core (and nearly all of a GPU) idle; stacked they run as a few large kernels.

How it stays equal to K separate `Trainer` runs:
- **Weights.** Member j is initialised exactly as `Trainer` initialises seed j (global seed,
  then `build_models`), and its layers are stacked into [K, in, out] tensors; a forward pass is
  one `torch.baddbmm` per layer.
- **Randomness.** Every member has its own `torch.Generator` seeded with its seed, and draws
  from it in `Trainer`'s order (real batch, noise, interpolation epsilon; then the generator
  step's noise). So a member's batches depend only on its own seed, never on K or on the
  other members.
- **Optimisers.** `torch.optim` takes one lr and one pair of betas per parameter group, so
  `BatchedAdam` and `BatchedRMSprop` below reimplement `torch.optim.Adam` / `RMSprop`'s update
  with per-member hyperparameters.
- **Divergence.** A member whose losses become NaN/inf (or huge) or whose weights explode is
  frozen: its parameters stop changing (masked updates) and it reports `diverged = 1`. The
  others are computed by the same per-member kernels as before, so they continue bit for bit.

The 2D datasets' MLPs stack as [K, in, out] weights (`StackedMLP`); the image datasets' conv
nets as grouped convolutions (`trainers.stacked_conv`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers import names
from trainers.config import ConfigError, TrialConfig, make_config
from trainers.data import build_dataset
from trainers.loop import (
    _CRITIC_EVAL_BATCH,
    _EVAL_SEED_OFFSET,
    _FINITE_CHECK_EVERY,
    _LOSS_LIMIT,
    _WEIGHT_LIMIT,
    resolve_device,
    save_atomic,
)
from trainers.models import build_models
from trainers.quality import DEFAULT_RULE, SuccessRule, failed_metrics
from trainers.stacked_conv import StackedConvCritic, StackedConvGenerator

# What members must share (one batched computation) and what may differ between them.
SHARED = ("loss", "dataset", "steps", "batch_size", "n_critic", "optimizer", "lr_schedule",
          "z_dim", "hidden", "depth", "eval_every", "eval_samples", "dataset_scale", "device",
          "data_root", "download", "fid_backend")
PER_MEMBER = ("seed", "gp_lambda", "clip_value", "lr_g", "lr_d", "beta1", "beta2")


# ---------------------------------------------------------------------------- stacked MLP
class StackedMLP(nn.Module):
    """K copies of `trainers.models.mlp`, one weight tensor [K, in, out] per layer."""

    def __init__(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> None:
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(w.contiguous()) for w in weights)
        self.biases = nn.ParameterList(nn.Parameter(b.contiguous()) for b in biases)

    @classmethod
    def stack(cls, members: Sequence[nn.Sequential]) -> StackedMLP:
        linears = [[m for m in seq if isinstance(m, nn.Linear)] for seq in members]
        depth = len(linears[0])
        weights = [torch.stack([ls[i].weight.detach().t() for ls in linears]) for i in range(depth)]
        biases = [torch.stack([ls[i].bias.detach()[None, :] for ls in linears])
                  for i in range(depth)]
        return cls(weights, biases)

    def forward(self, x: Tensor) -> Tensor:
        """[K, B, in] -> [K, B, out]."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x

    def member(self, j: int) -> list[Tensor]:
        """Member j's parameters in `nn.Linear` layout (weight [out, in], bias [out])."""
        out = []
        for w, b in zip(self.weights, self.biases, strict=True):
            out += [w[j].t(), b[j, 0]]
        return out


# ---------------------------------------------------------------------------- optimisers
def _per_member(x: Tensor, p: Tensor) -> Tensor:
    return x.view((-1,) + (1,) * (p.dim() - 1))


class _BatchedOptimizer:
    """Common part: parameters whose first dimension is the member, and frozen members.

    Updates are done in place for every member; a frozen member's parameters and state are
    put back afterwards, so they never change (cheaper than masking every operation)."""

    def __init__(self, params: Sequence[Tensor]) -> None:
        self.params = list(params)
        self.state: list[dict[str, Tensor]] = []
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: Tensor, frozen: Tensor | None = None) -> None:
        """One update with per-member learning rates `lr` [K]; members where `frozen` [K] is
        True keep their parameters and optimiser state."""
        self.t += 1
        factors = self._factors(lr)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            tensors = [p, *self.state[i].values()]
            kept = [x[frozen].clone() for x in tensors] if frozen is not None else None
            self._update(p, p.grad, self.state[i], [_per_member(f, p) for f in factors])
            if kept is not None:
                for x, old in zip(tensors, kept, strict=True):
                    x[frozen] = old

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "state": [{k: v.cpu() for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        for mine, saved in zip(self.state, state["state"], strict=True):
            for k, v in saved.items():
                mine[k].copy_(v)


class BatchedAdam(_BatchedOptimizer):
    """`torch.optim.Adam`'s update (eps 1e-8, no weight decay) with per-member betas [K]."""

    def __init__(self, params: Sequence[Tensor], beta1: Tensor, beta2: Tensor,
                 eps: float = 1e-8) -> None:
        super().__init__(params)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.state = [{"m": torch.zeros_like(p), "v": torch.zeros_like(p)} for p in self.params]

    def _factors(self, lr: Tensor) -> list[Tensor]:
        # Bias corrections in float64, as torch computes them in Python floats.
        b1, b2 = self.beta1.double(), self.beta2.double()
        step_size = (lr.double() / (1 - b1 ** self.t)).to(lr.dtype)
        bc2_sqrt = (1 - b2 ** self.t).sqrt().to(lr.dtype)
        return [1 - self.beta1, self.beta2, 1 - self.beta2, step_size, bc2_sqrt]

    def _update(self, p: Tensor, g: Tensor, s: dict[str, Tensor], f: list[Tensor]) -> None:
        w1, b2, w2, step_size, bc2_sqrt = f
        s["m"].lerp_(g, w1)
        s["v"].mul_(b2).add_(g * g * w2)
        denom = (s["v"].sqrt() / bc2_sqrt).add_(self.eps)
        p.sub_(step_size * s["m"] / denom)


class BatchedRMSprop(_BatchedOptimizer):
    """`torch.optim.RMSprop`'s update (alpha 0.99, eps 1e-8, no momentum), per-member lr."""

    def __init__(self, params: Sequence[Tensor], alpha: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__(params)
        self.alpha, self.eps = alpha, eps
        self.state = [{"sq": torch.zeros_like(p)} for p in self.params]

    def _factors(self, lr: Tensor) -> list[Tensor]:
        return [lr]

    def _update(self, p: Tensor, g: Tensor, s: dict[str, Tensor], f: list[Tensor]) -> None:
        s["sq"].mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
        p.sub_(f[0] * g / (s["sq"].sqrt() + self.eps))


# ---------------------------------------------------------------------------- losses
def _critic_loss(loss: str, D: StackedMLP, real: Tensor, fake: Tensor, eps: Tensor | None,
                 gp_lambda: Tensor) -> Tensor:
    """Per-member critic loss [K] (the batched form of `trainers.losses`)."""
    if loss in ("bce", "bce-ns"):
        return F.softplus(-D(real)).mean((1, 2)) + F.softplus(D(fake)).mean((1, 2))
    wgan = D(fake).mean((1, 2)) - D(real).mean((1, 2))
    if loss == "wgan-clip":
        return wgan
    x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    norms = grad.flatten(2).norm(2, dim=2)  # [K, B]
    return wgan + gp_lambda * ((norms - 1) ** 2).mean(1)


def _generator_loss(loss: str, scores: Tensor) -> Tensor:
    if loss == "bce":
        return -F.softplus(scores).mean((1, 2))
    if loss == "bce-ns":
        return F.softplus(-scores).mean((1, 2))
    return -scores.mean((1, 2))


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
        # Per-sample interpolation weights broadcast over a sample's dims (as in Trainer).
        self._eps_shape = (1,) * len(self.data.shape)
        self.gens = [torch.Generator(device=self.device).manual_seed(c.seed) for c in configs]

        def col(name: str) -> Tensor:
            return torch.tensor([float(getattr(c, name)) for c in configs], device=self.device)

        self.lr_g, self.lr_d = col("lr_g"), col("lr_d")
        self.gp_lambda, self.clip_value = col("gp_lambda"), col("clip_value")
        if cfg.optimizer == "rmsprop":
            self.opt_g = BatchedRMSprop(list(self.G.parameters()))
            self.opt_d = BatchedRMSprop(list(self.D.parameters()))
        else:
            b1, b2 = col("beta1"), col("beta2")
            self.opt_g = BatchedAdam(list(self.G.parameters()), b1, b2)
            self.opt_d = BatchedAdam(list(self.D.parameters()), b1, b2)
        self.step = 0
        self.member_steps = [0] * self.k  # a frozen (diverged) member's step stops
        self.diverged = torch.zeros(self.k, dtype=torch.bool, device=self.device)
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self._loss_sum = torch.zeros(self.k, 2, device=self.device)
        self._loss_count = 0
        self._make_eval_sets()

    # ------------------------------------------------------------------ the loop
    @property
    def done(self) -> bool:
        return bool(self.diverged.all()) or self.step >= self.config.steps

    def next_eval_step(self) -> int:
        every = self.config.eval_every
        return min((self.step // every + 1) * every, self.config.steps)

    def run(self) -> list[dict[str, float]]:
        """Train to `steps` (or until every member diverged); the final metrics per member."""
        metrics = None
        while metrics is None or not self.done:
            self.train_until(self.next_eval_step())
            metrics = self.evaluate()
        return metrics

    def _draw(self, fn) -> Tensor:
        return torch.stack([fn(g) for g in self.gens])

    def train_until(self, until: int) -> None:
        cfg, G, D = self.config, self.G, self.D
        b, z = cfg.batch_size, cfg.z_dim
        dev = self.device
        gp = cfg.loss == "wgan-gp"
        t0 = time.perf_counter()
        while self.step < until and not self.done:
            scale = 1.0 - self.step / cfg.steps if cfg.lr_schedule == "linear" else 1.0
            active = ~self.diverged
            frozen = self.diverged if bool(self.diverged.any()) else None
            # Batch-norm running statistics change in every forward pass: a frozen member's
            # are put back after the step, like its weights.
            kept = [buf[frozen].clone() for buf in G.buffers()] if frozen is not None else []
            for _ in range(cfg.n_critic):
                real = self._draw(lambda g: self.data.sample(b, g))
                noise = self._draw(lambda g: torch.randn(b, z, generator=g, device=dev))
                eps = (self._draw(lambda g: torch.rand(b, *self._eps_shape, generator=g,
                                                       device=dev)) if gp else None)
                with torch.no_grad():
                    fake = G(noise)
                loss_d = _critic_loss(cfg.loss, D, real, fake, eps, self.gp_lambda)
                self.opt_d.zero_grad()
                loss_d.sum().backward()
                self.opt_d.step(self.lr_d * scale, frozen)
                if cfg.loss == "wgan-clip":
                    self._clip(frozen)
            noise = self._draw(lambda g: torch.randn(b, z, generator=g, device=dev))
            D.requires_grad_(False)
            loss_g = _generator_loss(cfg.loss, D(G(noise)))
            self.opt_g.zero_grad()
            loss_g.sum().backward()
            self.opt_g.step(self.lr_g * scale, frozen)
            D.requires_grad_(True)
            for buf, old in zip(G.buffers(), kept, strict=False):
                buf[frozen] = old
            self._loss_sum += torch.where(active[:, None],
                                          torch.stack([loss_d.detach(), loss_g.detach()], 1),
                                          torch.zeros((), device=dev))
            self._loss_count += 1
            self.step += 1
            for j in active.nonzero().flatten().tolist():
                self.member_steps[j] = self.step
            if self.step % _FINITE_CHECK_EVERY == 0:
                self.diverged |= self._losses_blew_up()
        self.train_seconds += time.perf_counter() - t0

    @torch.no_grad()
    def _clip(self, frozen: Tensor | None) -> None:
        for p in self.D.parameters():
            kept = p[frozen].clone() if frozen is not None else None
            c = _per_member(self.clip_value, p)
            torch.minimum(p, c, out=p)
            torch.maximum(p, -c, out=p)
            if kept is not None:
                p[frozen] = kept

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
        for c in self.configs:  # as Trainer._make_eval_set, per member
            g = torch.Generator(device=self.device).manual_seed(c.seed + _EVAL_SEED_OFFSET)
            states.append(g.get_state())
            zs.append(torch.randn(cfg.eval_samples, cfg.z_dim, generator=g, device=self.device))
            reals.append(self.data.sample(min(cfg.eval_samples, _CRITIC_EVAL_BATCH), g))
        self.eval_z, self.eval_real, self._eval_states = torch.stack(zs), torch.stack(reals), \
            states

    @torch.no_grad()
    def sample(self) -> Tensor:
        """[K, eval_samples, ...] samples from each member's fixed evaluation noise; batch
        norm uses its running statistics, as `Trainer.sample`."""
        self.G.eval()
        try:
            return torch.cat([self.G(z) for z in self.eval_z.split(4096, dim=1)], dim=1)
        finally:
            self.G.train()

    def evaluate(self) -> list[dict[str, float]]:
        """Per-member metrics (the same names and rules as `Trainer.evaluate`)."""
        t0 = time.perf_counter()
        means = self._loss_sum / max(1, self._loss_count)
        if self._loss_count:
            self.diverged |= self._losses_blew_up()
        had_losses = self._loss_count > 0
        self._loss_sum.zero_()
        self._loss_count = 0
        fake = self.sample()
        bad = ~torch.isfinite(fake).flatten(1).all(1) | self._weights_exploded()
        self.diverged |= bad
        critic = self._critic_metrics(fake)
        out = []
        for j in range(self.k):
            m: dict[str, float] = {names.STEP: float(self.member_steps[j])}
            if self.diverged[j]:
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
        for state in self._eval_states:
            g = torch.Generator(device=self.device)
            g.set_state(state)
            eps.append(torch.rand(real.shape[1], *self._eps_shape, generator=g,
                                  device=self.device))
        x_hat = (torch.stack(eps) * real + (1 - torch.stack(eps)) * fake).detach()
        x_hat.requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(x_hat).sum(), x_hat)
        out = {names.GRAD_NORM: grad.flatten(2).norm(2, dim=2).mean(1).tolist()}
        if self.config.loss in ("wgan-clip", "wgan-gp"):
            with torch.no_grad():
                out[names.W_DISTANCE] = (self.D(real).mean((1, 2))
                                         - self.D(fake).mean((1, 2))).tolist()
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"configs": [c.to_dict() for c in self.configs], "step": self.step,
                "member_steps": list(self.member_steps), "diverged": self.diverged.cpu(),
                "G": self.G.state_dict(), "D": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "gens": [g.get_state() for g in self.gens], "loss_sum": self._loss_sum.cpu(),
                "loss_count": self._loss_count, "train_seconds": self.train_seconds,
                "eval_seconds": self.eval_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.member_steps = [int(s) for s in state["member_steps"]]
        self.diverged = state["diverged"].to(self.device)
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
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=False),
                              device, rule)

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str | None = None,
                   rule: SuccessRule = DEFAULT_RULE) -> Population:
        cfgs = [make_config({**c, **({"device": device} if device else {})},
                            fill_loss_defaults=False) for c in state["configs"]]
        pop = cls(cfgs, rule)
        pop.load_state_dict(state)
        return pop


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
