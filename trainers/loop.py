"""One training run: a population of one (`trainers.population` is the only training loop).

`Trainer` knows nothing of Ray, Optuna or MLflow. Callers pass `report(step, metrics)`, called
at every evaluation, and get the final metrics back. A run is deterministic for a given seed
on CPU, and a checkpoint restores it exactly (weights, optimisers, step and RNG state).

The loop: n_critic critic steps on fresh real and (detached) fake batches, then one generator
step through a frozen critic; evaluation every `eval_every` steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from trainers.config import ConfigError, TrialConfig
from trainers.population import Population, eval_noise
from trainers.quality import DEFAULT_RULE, SuccessRule
from trainers.runtime import resolve_device, save_atomic, set_threads

__all__ = ["Report", "Trainer", "resolve_device", "save_atomic", "set_threads", "train"]

Report = Callable[[int, dict[str, float]], None]


class Trainer(Population):
    """One GAN run: a `Population` with one member, whose metrics come as one dict.

    `rule` judges `seed_success` at every evaluation; it is evaluation policy, not a training
    hyperparameter, so it is not part of the config or the checkpoint.
    """

    def __init__(self, config: TrialConfig, rule: SuccessRule = DEFAULT_RULE, *,
                 stacking: str = "auto") -> None:
        super().__init__([config], rule, stacking=stacking)

    @property
    def diverged(self) -> bool:
        return self._dead[0]

    def run(self, report: Report | None = None) -> dict[str, float]:
        """Train to `config.steps` (or divergence), evaluating every `eval_every` steps."""
        return super().run(report)

    def evaluate(self) -> dict[str, float]:  # type: ignore[override]
        """Data-side metrics on `eval_samples` fakes, critic-side metrics and mean losses."""
        return super().evaluate()[0]

    def sample(self, n: int | None = None) -> Tensor:  # type: ignore[override]
        """Generated samples from the fixed evaluation noise (all of it by default), or n
        samples from the evaluation stream."""
        if n is None or n == self.config.eval_samples:
            return super().sample()[0]
        return self._generate(eval_noise(self.keys, n, self.config.z_dim))[0]

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str | None = None,
                   rule: SuccessRule = DEFAULT_RULE) -> Trainer:
        if "configs" not in state or len(state["configs"]) != 1:
            raise ConfigError("this checkpoint is not a single run's (it was written by an "
                              "older gan-sweeper, or holds several members); start over")
        return super().from_state(state, device, rule)  # type: ignore[return-value]

    @classmethod
    def _new(cls, configs: list[TrialConfig], rule: SuccessRule) -> Trainer:
        return cls(configs[0], rule)


def train(config: TrialConfig, report: Report | None = None,
          rule: SuccessRule = DEFAULT_RULE) -> dict[str, float]:
    """Train one run from scratch and return its final metrics."""
    return Trainer(config, rule).run(report)
