"""The plainest single GAN run: `nn` modules, `torch.optim`, every loss written out inline
(the optional penalty comes from its registry: each one is held to its closed form instead).

It is the specification the population is held to, not a second trainer: tests check that
member j of a `Population` ends where `ReferenceRun(config_j)` ends (within float round-off),
and `benchmarks/trainer_overhead.py` checks that a population of one runs at >= 0.9x its
speed. It takes the same draws as a member: each step's block from the counter-based stream of
its seed (`trainers.rng.step_noise`: real batch, noise, interpolation eps per critic
iteration; then the generator step's noise), and initialises the networks exactly as a member
does (global seed, then `build_models`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers import rng
from trainers.config import TrialConfig
from trainers.data import Dataset, build_dataset
from trainers.models import build_models
from trainers.penalties import make_penalty
from trainers.population import eval_noise
from trainers.runtime import resolve_device


class ReferenceRun:
    """One run of `config` as a minimal PyTorch loop (no checks, no metrics, no bookkeeping)."""

    def __init__(self, config: TrialConfig, data: Dataset | None = None) -> None:
        self.config = cfg = config
        self.device = resolve_device(cfg.device)
        self.data = data or build_dataset(cfg, self.device)
        torch.manual_seed(cfg.seed)
        g, d = build_models(cfg, self.data)
        self.G, self.D = g.to(self.device), d.to(self.device)
        self.opt_g = self._optimizer(self.G.parameters(), cfg.lr_g)
        self.opt_d = self._optimizer(self.D.parameters(), cfg.lr_d)
        self.keys = rng.member_keys([cfg.seed], self.device)
        self.layout = rng.NoiseLayout(cfg.n_critic, cfg.batch_size, cfg.z_dim,
                                      *self.data.noise_dims)
        self.step = 0

    def _optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        if self.config.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr)
        return torch.optim.Adam(params, lr=lr, betas=(self.config.beta1, self.config.beta2))

    def _critic_loss(self, real: Tensor, fake: Tensor, eps: Tensor) -> Tensor:
        cfg, D = self.config, self.D
        if cfg.loss in ("bce", "bce-ns"):  # -log D(x) - log(1 - D(G(z))), D = sigmoid(c)
            loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        else:
            loss = D(fake).mean() - D(real).mean()
        if cfg.loss == "wgan-gp":
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
            loss = loss + cfg.gp_lambda * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
        penalty = make_penalty(cfg.penalty, cfg.penalty_weight)
        if penalty is not None:
            # Each penalty's value is held to its closed form (tests/trainers/test_penalties.py);
            # here it is applied as a population of one, so what the population test checks
            # is the plumbing: draw order, per-member weights, the sum into the critic loss.
            loss = loss + penalty(lambda x: D(x[0])[None], real[None], fake[None], eps[None])[0]
        return loss

    def _generator_loss(self, scores: Tensor) -> Tensor:
        if self.config.loss == "bce":
            return -F.softplus(scores).mean()  # log(1 - sigmoid(s))
        if self.config.loss == "bce-ns":
            return F.softplus(-scores).mean()  # -log sigmoid(s)
        return -scores.mean()

    def train_step(self) -> None:
        cfg, G, D = self.config, self.G, self.D
        if cfg.lr_schedule == "linear":
            scale = 1.0 - self.step / cfg.steps
            for opt, lr in ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr * scale
        noise = rng.step_noise(self.keys, self.layout, self.step)  # this run's draws: [0]
        for i in range(cfg.n_critic):
            real = self.data.from_noise(noise.real_u[0, i], noise.real_z[0, i])
            with torch.no_grad():
                fake = G(noise.fake_z[0, i])
            eps = noise.eps[0, i].reshape((len(real),) + (1,) * (real.dim() - 1))
            loss_d = self._critic_loss(real, fake, eps)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            if cfg.loss == "wgan-clip":
                with torch.no_grad():
                    for p in D.parameters():
                        p.clamp_(-cfg.clip_value, cfg.clip_value)
        D.requires_grad_(False)
        loss_g = self._generator_loss(D(G(noise.gen_z[0])))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        D.requires_grad_(True)
        self.step += 1

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.train_step()

    @torch.no_grad()
    def sample(self) -> Tensor:
        """`eval_samples` samples from the fixed evaluation noise (batch norm in eval mode)."""
        z = eval_noise(self.keys, self.config.eval_samples, self.config.z_dim)[0]
        self.G.eval()
        try:
            return self.G(z)
        finally:
            self.G.train()
