"""Batched building blocks of a population: K stacked MLPs and per-member optimisers.

Every parameter has the member as its first dimension, so one kernel serves all K members,
and per-member hyperparameters are [K] tensors broadcast along that dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn


# ---------------------------------------------------------------------------- stacked MLP
class StackedMLP(nn.Module):
    """K copies of `trainers.models.mlp`, one weight tensor [K, in, out] per layer."""

    def __init__(self, weights: Sequence[Tensor], biases: Sequence[Tensor],
                 activation: nn.Module | None = None) -> None:
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(w.contiguous()) for w in weights)
        self.biases = nn.ParameterList(nn.Parameter(b.contiguous()) for b in biases)
        self.activation = activation if activation is not None else nn.ReLU()

    @classmethod
    def stack(cls, members: Sequence[nn.Sequential]) -> StackedMLP:
        linears = [[m for m in seq if isinstance(m, nn.Linear)] for seq in members]
        acts = {type(m) for seq in members for m in seq if not isinstance(m, nn.Linear)}
        if len(acts) > 1:
            raise ValueError(f"members mix activations {sorted(a.__name__ for a in acts)}")
        depth = len(linears[0])
        weights = [torch.stack([ls[i].weight.detach().t() for ls in linears]) for i in range(depth)]
        biases = [torch.stack([ls[i].bias.detach()[None, :] for ls in linears])
                  for i in range(depth)]
        return cls(weights, biases, acts.pop()() if acts else None)

    def forward(self, x: Tensor) -> Tensor:
        """[K, B, in] -> [K, B, out]."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = self.activation(x)
        return x

    def member_state_dict(self, j: int) -> dict[str, Tensor]:
        """Member j in `trainers.models.mlp`'s state-dict layout: the Linear layers sit at
        0, 2, 4, ... of the Sequential (activations between), weight [out, in], bias [out]."""
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{2 * i}.weight"] = w[j].t().detach().clone()
            out[f"{2 * i}.bias"] = b[j, 0].detach().clone()
        return out


# ---------------------------------------------------------------------------- optimisers
def _per_member(x: Tensor, p: Tensor) -> Tensor:
    return x.view((-1,) + (1,) * (p.dim() - 1))


class _BatchedOptimizer:
    """Common part: parameters whose first dimension is the member, and frozen members.

    A step takes `active` [K] (False for a frozen, diverged member) and masks each update
    with it: a frozen member's parameters stay exactly as they are, the others' updates are
    those of `torch.optim`. A frozen member's optimiser state is not masked (one op less per
    parameter): it may turn NaN, and nothing reads it again. Masks rather than boolean
    indexing: the same ops whatever the members' states, and no device synchronisation."""

    def __init__(self, params: Sequence[Tensor]) -> None:
        self.params = list(params)
        self.state: list[dict[str, Tensor]] = []
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: Tensor, active: Tensor) -> None:
        """One update with per-member learning rates `lr` [K]; members where `active` [K]
        is False keep their parameters and optimiser state."""
        self.t += 1
        factors = self._factors(lr)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            update = self._update(p.grad, self.state[i], [_per_member(f, p) for f in factors])
            p.sub_(torch.where(_per_member(active, p), update, 0.0))

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

    def _update(self, g: Tensor, s: dict[str, Tensor], f: list[Tensor]) -> Tensor:
        w1, b2, w2, step_size, bc2_sqrt = f
        s["m"].lerp_(g, w1)
        s["v"].mul_(b2).add_(g * g * w2)
        denom = (s["v"].sqrt() / bc2_sqrt).add_(self.eps)
        return step_size * s["m"] / denom


class BatchedRMSprop(_BatchedOptimizer):
    """`torch.optim.RMSprop`'s update (alpha 0.99, eps 1e-8, no momentum), per-member lr."""

    def __init__(self, params: Sequence[Tensor], alpha: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__(params)
        self.alpha, self.eps = alpha, eps
        self.state = [{"sq": torch.zeros_like(p)} for p in self.params]

    def _factors(self, lr: Tensor) -> list[Tensor]:
        return [lr]

    def _update(self, g: Tensor, s: dict[str, Tensor], f: list[Tensor]) -> Tensor:
        s["sq"].mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
        return f[0] * g / (s["sq"].sqrt() + self.eps)
