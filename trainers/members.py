"""K members (a setting's seeds, or settings of one shape) trained together, one interface.

`make_members(configs)` returns a batched `Population` where batching pays and the members can
share one computation, and otherwise `SeparateRuns`: K `Trainer`s advanced in lockstep behind
the same interface. Callers (a sweep trial, `train --seeds`, `stable --confirm`, the
mode-coverage benchmark) never need to know which they got:

    members = make_members(configs, rule)
    while not members.done:
        members.train_until(members.next_eval_step())
        per_member = members.evaluate()      # one metrics dict per member, in config order
    save_members(members, folder)            # exact; load_members(folder, ...) resumes

A member's metrics carry its own `step` (a diverged member stops there) and its share of the
wall time (`train_seconds` / `eval_seconds` divided by K for a population), so summing the
seeds' seconds gives what the trial really cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from trainers import names
from trainers.config import ConfigError, TrialConfig
from trainers.data import Dataset
from trainers.loop import Trainer, save_atomic
from trainers.population import SHARED, Population, batchable
from trainers.quality import DEFAULT_RULE, SuccessRule

# A population is saved as one file; separate runs (and checkpoints from before populations)
# as one file per member.
POPULATION_FILE = "population.pt"


def member_file(j: int) -> str:
    return f"seed{j}.pt"


class Members(Protocol):
    configs: list[TrialConfig]
    data: Dataset
    k: int
    step: int
    train_seconds: float

    @property
    def done(self) -> bool: ...
    def next_eval_step(self) -> int: ...
    def train_until(self, until: int) -> None: ...
    def evaluate(self) -> list[dict[str, float]]: ...
    def sample(self) -> Tensor: ...


class SeparateRuns:
    """K `Trainer`s behind the population interface: where batching does not pay (or cannot
    be done, e.g. members of different shapes), or for checkpoints written before it."""

    def __init__(self, configs: Sequence[TrialConfig], rule: SuccessRule = DEFAULT_RULE,
                 trainers: Sequence[Trainer] | None = None) -> None:
        if not configs:
            raise ConfigError("a population needs at least one member")
        self.configs = list(configs)
        self.k = len(self.configs)
        self.trainers = list(trainers) if trainers is not None else [
            Trainer(c, rule) for c in self.configs]
        self.data = self.trainers[0].data
        self._latest: list[dict[str, float] | None] = [None] * self.k
        self._evaluated_at = [-1] * self.k

    @property
    def step(self) -> int:
        return max(t.step for t in self.trainers)

    @property
    def train_seconds(self) -> float:
        return sum(t.train_seconds for t in self.trainers)

    @property
    def done(self) -> bool:
        return all(t.done for t in self.trainers)

    def next_eval_step(self) -> int:
        return min((t.next_eval_step() for t in self.trainers if not t.done), default=self.step)

    def train_until(self, until: int) -> None:
        for t in self.trainers:
            if not t.done:
                t.train_until(until)

    def evaluate(self) -> list[dict[str, float]]:
        """Each member's metrics; a member that has not moved since it was last evaluated
        (finished or diverged) keeps its last metrics rather than being measured again."""
        for j, t in enumerate(self.trainers):
            if self._latest[j] is None or self._evaluated_at[j] != t.step:
                self._latest[j] = t.evaluate()
                self._evaluated_at[j] = t.step
        return [dict(m) for m in self._latest]  # type: ignore[arg-type]

    def sample(self) -> Tensor:
        return torch.stack([t.sample() for t in self.trainers])

    def save(self, folder: str | Path) -> None:
        for j, t in enumerate(self.trainers):
            t.save(Path(folder) / member_file(j))


def make_members(configs: Sequence[TrialConfig], rule: SuccessRule = DEFAULT_RULE,
                 batched: bool | None = None) -> Population | SeparateRuns:
    """A population if the members can share one batched computation (or `batched` says so),
    else separate runs. `batched=True` on members that cannot be batched is an error."""
    reason = batchable(configs)
    if batched is None:
        batched = reason is None and len(configs) > 1
    if batched and reason is not None:
        raise ConfigError(reason)
    return Population(configs, rule) if batched else SeparateRuns(configs, rule)


def share_groups(configs: Sequence[TrialConfig]) -> list[list[int]]:
    """Indices of `configs` split into groups that can each train as one population (equal
    in every field that members must share), in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(tuple(getattr(c, f) for f in SHARED), []).append(i)
    return list(groups.values())


def save_members(members: Population | SeparateRuns, folder: str | Path) -> None:
    """Write the members' exact state into `folder` (a Tune checkpoint directory)."""
    if isinstance(members, Population):
        members.save(Path(folder) / POPULATION_FILE)
    else:
        members.save(folder)


def load_members(folder: str | Path, k: int, device: str | None = None,
                 rule: SuccessRule = DEFAULT_RULE) -> Population | SeparateRuns | None:
    """The members saved in `folder`, or None if it holds no checkpoint of them."""
    folder = Path(folder)
    if (folder / POPULATION_FILE).exists():
        pop = Population.load(folder / POPULATION_FILE, device=device, rule=rule)
        if pop.k != k:
            raise ConfigError(f"checkpoint {folder} holds {pop.k} members, not {k}")
        return pop
    files = [folder / member_file(j) for j in range(k)]
    if not any(f.exists() for f in files):
        return None
    trainers = [Trainer.load(f, device=device, rule=rule) for f in files]
    return SeparateRuns([t.config for t in trainers], rule, trainers)


def save_members_file(members: Population | SeparateRuns, path: str | Path) -> None:
    """Write the members into one file (`sweeper train --checkpoint`). One separate run is
    written as a plain `Trainer` checkpoint, as before populations."""
    if isinstance(members, Population):
        members.save(path)
    elif members.k == 1:
        members.trainers[0].save(path)
    else:
        save_atomic({"separate": [t.state_dict() for t in members.trainers]}, path)


def load_members_file(path: str | Path, device: str | None = None,
                      rule: SuccessRule = DEFAULT_RULE) -> Population | SeparateRuns:
    """Members from a file written by `save_members_file` (or a `Trainer` checkpoint)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "configs" in state:
        return Population.from_state(state, device, rule)
    trainers = [Trainer.from_state(s, device, rule) for s in state.get("separate", [state])]
    return SeparateRuns([t.config for t in trainers], rule, trainers)


def checkpoint_complete(names_in_folder: Sequence[str], k: int) -> bool:
    """Whether a checkpoint folder with these files holds the whole state of k members."""
    have = set(names_in_folder)
    return POPULATION_FILE in have or all(member_file(j) in have for j in range(k))


def member_done(m: dict[str, float], cfg: TrialConfig) -> bool:
    """A member is done when it diverged or reached its budget."""
    return bool(m.get(names.DIVERGED)) or m.get(names.STEP, 0) >= cfg.steps
