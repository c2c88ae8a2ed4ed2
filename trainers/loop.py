"""The training loop: n_critic critic steps, then one generator step; evaluation on a schedule.

`Trainer` knows nothing of Ray, Optuna or MLflow. Callers pass `report(step, metrics)`, called
at every evaluation, and get the final metrics back. A run is deterministic for a given seed
on CPU, and a checkpoint restores it exactly (weights, optimisers, step and RNG state).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trainers import names
from trainers.config import TrialConfig, make_config
from trainers.data import build_dataset
from trainers.losses import critic_grad_norms, make_loss, random_interpolates
from trainers.models import build_models
from trainers.quality import DEFAULT_RULE, SuccessRule, failed_metrics

Report = Callable[[int, dict[str, float]], None]

# Non-finite losses are looked for every this many generator steps: often enough to stop a
# diverged run early, rarely enough that the check (a device sync on GPU) costs nothing.
_FINITE_CHECK_EVERY = 25
# A parameter this large means the run has blown up even if no NaN has appeared yet; healthy
# MLP/conv GAN weights stay orders of magnitude below it.
_WEIGHT_LIMIT = 1e5
# Likewise a loss this large: an unconstrained critic can reach 1e36 before overflowing to
# inf, long after the run stopped learning anything. Healthy GAN losses are O(1)-O(1e3).
_LOSS_LIMIT = 1e10
# Critic-side metrics (w_distance, grad_norm) use this many held-out samples at most.
_CRITIC_EVAL_BATCH = 2048
# The evaluation noise and interpolation RNG are seeded apart from training, so changing the
# evaluation schedule never changes the training trajectory.
_EVAL_SEED_OFFSET = 7_919


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present (Ray sets CUDA_VISIBLE_DEVICES per trial), else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def set_threads(n: int | None = None) -> int:
    """Use as many torch threads as CPUs this process may run on (or n, e.g. Ray's grant)."""
    n = n or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()


class Trainer:
    """One GAN run: models, optimisers, data sampler, loss strategy and step counter.

    `rule` judges `seed_success` at every evaluation; it is evaluation policy, not a training
    hyperparameter, so it is not part of the config or the checkpoint.
    """

    def __init__(self, config: TrialConfig, rule: SuccessRule = DEFAULT_RULE) -> None:
        self.config = cfg = config
        self.rule = rule
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)  # weight initialisation
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.data = build_dataset(cfg, self.device)
        g, d = build_models(cfg, self.data)
        self.G, self.D = g.to(self.device), d.to(self.device)
        self.opt_g = _optimizer(cfg, self.G.parameters(), cfg.lr_g)
        self.opt_d = _optimizer(cfg, self.D.parameters(), cfg.lr_d)
        self._decay = cfg.lr_schedule == "linear"
        self.loss = make_loss(cfg.loss, gp_lambda=cfg.gp_lambda, clip_value=cfg.clip_value)
        self.step = 0
        self.diverged = False
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self._loss_sum = torch.zeros(2, device=self.device)  # (critic, generator)
        self._loss_count = 0
        self._make_eval_set()

    # ------------------------------------------------------------------ the loop
    def run(self, report: Report | None = None) -> dict[str, float]:
        """Train to `config.steps` (or divergence), evaluating every `eval_every` steps."""
        metrics = None
        while metrics is None or not self.done:
            self.train_until(self.next_eval_step())
            metrics = self.evaluate()
            if report is not None:
                report(self.step, metrics)
        return metrics

    @property
    def done(self) -> bool:
        return self.diverged or self.step >= self.config.steps

    def next_eval_step(self) -> int:
        every = self.config.eval_every
        return min((self.step // every + 1) * every, self.config.steps)

    def train_until(self, until: int) -> None:
        """Generator steps until `until`; stops early (diverged) on a non-finite loss."""
        cfg, G, D = self.config, self.G, self.D
        t0 = time.perf_counter()
        while self.step < until and not self.diverged:
            if self._decay:
                self._set_lr_scale(1.0 - self.step / cfg.steps)
            # ---- critic: n_critic steps on fresh real and (detached) fake batches ----
            for _ in range(cfg.n_critic):
                real = self.data.sample(cfg.batch_size, self.gen)
                with torch.no_grad():
                    fake = G(self._noise(cfg.batch_size))
                loss_d = self.loss.critic_loss(D, real, fake, self.gen)
                self.opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                self.opt_d.step()
                self.loss.after_critic_step(D)

            # ---- generator: one step through a frozen critic ----
            D.requires_grad_(False)
            loss_g = self.loss.generator_loss(D(G(self._noise(cfg.batch_size))))
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
            D.requires_grad_(True)

            self._loss_sum += torch.stack([loss_d.detach(), loss_g.detach()])
            self._loss_count += 1
            self.step += 1
            if self.step % _FINITE_CHECK_EVERY == 0 and self._losses_blew_up():
                self.diverged = True
        self.train_seconds += time.perf_counter() - t0

    def _set_lr_scale(self, scale: float) -> None:
        # Derived from the step alone, so a resumed run continues the same schedule.
        for opt, lr in ((self.opt_g, self.config.lr_g), (self.opt_d, self.config.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * scale

    def _losses_blew_up(self) -> bool:
        mean = self._loss_sum / max(1, self._loss_count)
        return bool(not torch.isfinite(mean).all() or mean.abs().max() > _LOSS_LIMIT)

    def _noise(self, n: int) -> Tensor:
        return torch.randn(n, self.config.z_dim, generator=self.gen, device=self.device)

    # ------------------------------------------------------------------ evaluation
    def _make_eval_set(self) -> None:
        cfg = self.config
        g = torch.Generator(device=self.device).manual_seed(cfg.seed + _EVAL_SEED_OFFSET)
        self._eval_gen_state = g.get_state()
        self.eval_z = torch.randn(cfg.eval_samples, cfg.z_dim, generator=g, device=self.device)
        n = min(cfg.eval_samples, _CRITIC_EVAL_BATCH)
        self.eval_real = self.data.sample(n, g)

    @torch.no_grad()
    def sample(self, n: int | None = None) -> Tensor:
        """Generated samples from the fixed evaluation noise (all of it by default)."""
        self.G.eval()
        try:
            z = self.eval_z if n is None or n == len(self.eval_z) else self._extra_noise(n)
            return torch.cat([self.G(chunk) for chunk in z.split(4096)])
        finally:
            self.G.train()

    def _extra_noise(self, n: int) -> Tensor:
        g = torch.Generator(device=self.device).manual_seed(self.config.seed + _EVAL_SEED_OFFSET)
        return torch.randn(n, self.config.z_dim, generator=g, device=self.device)

    def evaluate(self) -> dict[str, float]:
        """Data-side metrics on `eval_samples` fakes, plus critic-side metrics and mean losses."""
        t0 = time.perf_counter()
        out: dict[str, float] = {names.STEP: float(self.step)}
        if self._loss_count:
            if self._losses_blew_up():
                self.diverged = True
            else:
                out[names.LOSS_D], out[names.LOSS_G] = (self._loss_sum / self._loss_count).tolist()
        self._loss_sum.zero_()
        self._loss_count = 0
        fake = self.sample()
        if not self.diverged and (not torch.isfinite(fake).all() or self._weights_exploded()):
            self.diverged = True
        if self.diverged:
            out.update(self._diverged_metrics())
        else:
            out.update(self.data.evaluate(fake, self.rule))
            out.update(self._critic_metrics(fake))
            out[names.DIVERGED] = 0.0
        self.eval_seconds += time.perf_counter() - t0
        out[names.TRAIN_SECONDS] = self.train_seconds
        out[names.EVAL_SECONDS] = self.eval_seconds
        return out

    def _critic_metrics(self, fake: Tensor) -> dict[str, float]:
        real = self.eval_real
        fake = fake[: len(real)]
        g = torch.Generator(device=self.device)
        g.set_state(self._eval_gen_state)
        x_hat = random_interpolates(real, fake, g)
        out = {names.GRAD_NORM: critic_grad_norms(self.D, x_hat).mean().item()}
        if self.loss.wasserstein:
            with torch.no_grad():
                out[names.W_DISTANCE] = (self.D(real).mean() - self.D(fake).mean()).item()
        return {k: v for k, v in out.items() if math.isfinite(v)}

    def _diverged_metrics(self) -> dict[str, float]:
        # Non-finite samples lie within 3 sigma of no mode: nothing is covered, no sample is HQ,
        # the mode KL and the score take their worst cases. FID is not reported.
        return {names.DIVERGED: 1.0, **failed_metrics(self.data.num_modes)}

    def _weights_exploded(self) -> bool:
        with torch.no_grad():
            return any(p.abs().max().item() > _WEIGHT_LIMIT
                       for net in (self.G, self.D) for p in net.parameters())

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "diverged": self.diverged,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "gen": self.gen.get_state(),
            "loss_sum": self._loss_sum.cpu(),
            "loss_count": self._loss_count,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.diverged = bool(state["diverged"])
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.gen.set_state(state["gen"])
        self._loss_sum = state["loss_sum"].to(self.device)
        self._loss_count = int(state["loss_count"])
        self.train_seconds = float(state["train_seconds"])
        self.eval_seconds = float(state["eval_seconds"])

    def save(self, path: str | Path) -> None:
        save_atomic(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None,
             rule: SuccessRule = DEFAULT_RULE) -> Trainer:
        """Rebuild a trainer from a checkpoint; `device` may move it (e.g. GPU -> CPU)."""
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=False),
                              device, rule)

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str | None = None,
                   rule: SuccessRule = DEFAULT_RULE) -> Trainer:
        """Rebuild a trainer from a `state_dict()`."""
        cfg = dict(state["config"])
        if device is not None:
            cfg["device"] = device
        trainer = cls(make_config(cfg, fill_loss_defaults=False), rule)
        trainer.load_state_dict(state)
        return trainer


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint atomically (a crash mid-write never leaves a torn file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _optimizer(cfg: TrialConfig, params: Any, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2))


def train(config: TrialConfig, report: Report | None = None,
          rule: SuccessRule = DEFAULT_RULE) -> dict[str, float]:
    """Train one run from scratch and return its final metrics."""
    return Trainer(config, rule).run(report)

