"""K copies of any module as one batched module, with torch.func (the generic population).

`torch.func.stack_module_state` turns K separately built (and seeded) members into stacked
parameters and buffers with the member first, `[K, ...]`, and `vmap(functional_call(...))`
runs all K as one call: no mirror class per architecture, the user's module is the model.
The stacked parameters are leaves, so one `.backward()` over the summed member losses gives
each member its own gradient, and the batched optimisers (trainers/batched.py) update them
with per-member hyperparameters. Buffers (batch-norm running statistics) are stacked too and
updated in place per member.

Eager `vmap` costs about 15 us of dispatch per op, so for the small built-in networks the
hand-written stacks (`trainers.batched.StackedMLP`, `trainers.stacked_conv`) stay where
benchmarks/population.py measures them faster; this serves every other module.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


def _key(name: str) -> str:
    return name.replace(".", "__")  # attribute names cannot hold dots


class FuncStack(nn.Module):
    """K members of one architecture: `forward(x [K, B, ...]) -> [K, B, ...]`."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len({type(m) for m in members}) > 1:
            raise ValueError("population members must be the same module class")
        params, buffers = stack_module_state(list(members))
        self.k = len(members)
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        for name, p in params.items():
            self.register_parameter(_key(name), nn.Parameter(p.detach().clone()))
        for name, b in buffers.items():
            self.register_buffer(_key(name), b.clone())
        # The architecture, called with each member's tensors in turn. Kept out of this
        # module's parameters and state dict (a plain list hides it from nn.Module).
        self._base = [copy.deepcopy(members[0])]

        def call(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self._base[0], (p, b), (x,))

        # randomness="different": a member's dropout mask is its own (vmap's streams are
        # not reproducible per member: a model with dropout is not equal to its single run).
        self._call = vmap(call, randomness="different")

    def forward(self, x: Tensor) -> Tensor:
        p = {n: getattr(self, _key(n)) for n in self._param_names}
        b = {n: getattr(self, _key(n)) for n in self._buffer_names}
        return self._call(p, b, x)

    def train(self, mode: bool = True) -> FuncStack:
        self._base[0].train(mode)  # functional_call runs the base's modules in its mode
        return super().train(mode)

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - nn.Module's signature
        self._base[0]._apply(fn)  # non-parameter tensors of the base move with the stack
        return super()._apply(fn, recurse)

    def member_state_dict(self, j: int) -> dict[str, Tensor]:
        """Member j in the layout of the original module's state dict."""
        stacked = set(self._param_names + self._buffer_names)
        return {n: getattr(self, _key(n))[j].detach().clone()
                for n in self._base[0].state_dict() if n in stacked}
