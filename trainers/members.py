"""Members (a setting's seeds, or settings of one shape) trained together, and their files.

Every caller that trains several seeds or settings (a sweep trial, `train --seeds`,
`stable --confirm`, the mode-coverage benchmark) does it through `make_members`: one
`Population`, or with `--separate-seeds`, `Populations` trained in turn, and trains them
through the one outer loop, `trainers.population.evaluations`:

    members = make_members(configs, rule)
    for per_member in evaluations(members):  # one metrics dict per member, in config order
        ...
    save_members(members, folder)            # exact; load_members(folder, ...) resumes

A member's metrics carry its own `step` (a diverged member stops there) and its share of the
wall time (`train_seconds` / `eval_seconds` divided by K), so summing the seeds' seconds gives
what the trial really cost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from trainers import names
from trainers.config import ConfigError, TrialConfig
from trainers.population import SHARED, Population
from trainers.quality import DEFAULT_RULE, SuccessRule
from trainers.runtime import checkpoint_contents, read_checkpoint, save_atomic

# A population is saved as one file in a checkpoint folder.
POPULATION_FILE = "population.pt"
# What checkpoints written before populations held: one file per seed.
_OLD_MEMBER_FILE = "seed{}.pt"

log = logging.getLogger(__name__)


class Populations:
    """Members trained as several populations, one after another, behind the population's
    interface: single runs (chunk 1) with `--separate-seeds`, for devices where batching
    does not pay."""

    def __init__(self, configs: Sequence[TrialConfig], rule: SuccessRule = DEFAULT_RULE,
                 chunk: int = 1, runs: Sequence[Population] | None = None) -> None:
        if not configs:
            raise ConfigError("a population needs at least one member")
        self.configs = list(configs)
        self.k = len(self.configs)
        self.runs = list(runs) if runs is not None else [
            Population(self.configs[i:i + chunk], rule) for i in range(0, self.k, chunk)]
        self.data = self.runs[0].data
        self._latest: list[list[dict[str, float]] | None] = [None] * len(self.runs)
        self._evaluated_at = [-1] * len(self.runs)

    @property
    def step(self) -> int:
        return max(r.step for r in self.runs)

    @property
    def train_seconds(self) -> float:
        return sum(r.train_seconds for r in self.runs)

    @property
    def done(self) -> bool:
        return all(r.done for r in self.runs)

    def next_eval_step(self) -> int:
        return min((r.next_eval_step() for r in self.runs if not r.done), default=self.step)

    def train_until(self, until: int) -> None:
        for r in self.runs:
            r.train_until(until)

    def evaluate(self) -> list[dict[str, float]]:
        """Each member's metrics, in config order; a population that has not moved since
        its last evaluation (finished or diverged) keeps them rather than being measured
        again."""
        for i, r in enumerate(self.runs):
            if self._latest[i] is None or self._evaluated_at[i] != r.step:
                self._latest[i] = r.evaluate()
                self._evaluated_at[i] = r.step
        return [dict(m) for ms in self._latest for m in ms]  # type: ignore[union-attr]

    def sample(self) -> torch.Tensor:
        return torch.cat([r.sample() for r in self.runs])

    def keep(self, indices: Sequence[int]) -> Populations:
        """Only these members (each population keeps its kept members, where it was)."""
        starts = [0]
        for r in self.runs:
            starts.append(starts[-1] + r.k)
        runs = []
        for n, r in enumerate(self.runs):
            mine = [i - starts[n] for i in indices if starts[n] <= i < starts[n + 1]]
            if mine:
                runs.append(r if len(mine) == r.k else r.keep(mine))
        return Populations([self.configs[i] for i in indices], runs=runs)

    def state_dict(self) -> dict:
        return {"populations": [r.state_dict() for r in self.runs]}

    def save(self, path: str | Path) -> None:
        save_atomic(self.state_dict(), path)


Members = Population | Populations


def make_members(configs: Sequence[TrialConfig], rule: SuccessRule = DEFAULT_RULE,
                 batched: bool = True) -> Members:
    """The members as one population (they must share a shape: see `share_groups`), or with
    `batched=False` as single runs one after another.

    One population on every device: its step issues the same ops for any K. (Splitting large
    CPU populations into chunks used to be the rule; measured again with the O(1) step it is
    within a few percent either way, docs/results.md section 4.)"""
    if not batched:
        return Populations(configs, rule, chunk=1)
    return Population(configs, rule)


def share_groups(configs: Sequence[TrialConfig]) -> list[list[int]]:
    """Indices of `configs` split into groups that can each train as one population (equal
    in every field that members must share), in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(tuple(getattr(c, f) for f in SHARED), []).append(i)
    return list(groups.values())


def save_members(members: Members, folder: str | Path) -> None:
    """Write the members' exact state into `folder` (a Tune checkpoint directory)."""
    members.save(Path(folder) / POPULATION_FILE)


def load_members(folder: str | Path, k: int, device: str | None = None,
                 rule: SuccessRule = DEFAULT_RULE) -> Members | None:
    """The members saved in `folder`; None (start over) if it holds no checkpoint of them.

    A checkpoint from before populations (one file per seed) also means starting over: the
    training is deterministic given the seeds, and steps already logged are not logged again.
    """
    folder = Path(folder)
    if not (folder / POPULATION_FILE).exists():
        if (folder / _OLD_MEMBER_FILE.format(0)).exists():
            log.warning("checkpoint %s predates population training; the trial starts over",
                        folder)
        return None
    members = load_members_file(folder / POPULATION_FILE, device=device, rule=rule)
    if members.k != k:
        raise ConfigError(f"checkpoint {folder} holds {members.k} members, not {k}")
    return members


def save_members_file(members: Members, path: str | Path) -> None:
    """Write the members into one file (`sweeper train --checkpoint`)."""
    members.save(path)


def load_members_file(path: str | Path, device: str | None = None,
                      rule: SuccessRule = DEFAULT_RULE) -> Members:
    """Members from a file written by `save_members_file` (or `Trainer.save`). Nothing in the
    file runs (`read_checkpoint`); anything wrong with it is one line naming it."""
    state = read_checkpoint(path)
    with checkpoint_contents(path):
        if "populations" in state:
            runs = [Population.from_state(s, device, rule) for s in state["populations"]]
            if not runs:
                raise ConfigError("it holds no populations")
            return Populations([c for r in runs for c in r.configs], rule, runs=runs)
        if "configs" not in state:
            raise ConfigError("it was written by an older gan-sweeper, before population "
                              "training, or is not a checkpoint; drop --resume to start over")
        return Population.from_state(state, device, rule)


def checkpoint_complete(names_in_folder: Sequence[str]) -> bool:
    """Whether a checkpoint folder with these files holds the members' whole state."""
    return POPULATION_FILE in set(names_in_folder)


def member_done(m: dict[str, float], cfg: TrialConfig) -> bool:
    """A member is done when it diverged or reached its budget."""
    return bool(m.get(names.DIVERGED)) or m.get(names.STEP, 0) >= cfg.steps
