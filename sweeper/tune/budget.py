"""A compute budget for a whole sweep: stop it once its trials have trained N generator steps.

Compute is counted as the generator steps a trial reports it has trained over all its seeds
(`steps_trained`: a seed that diverged stops counting where it stopped; `step` x seeds for
reports without it), summed over the trials. A trial ASHA stopped keeps counting what it
trained. Once the sum reaches the budget, Tune stops the experiment: the trials then running
stop where they are (marked stopped, like ASHA's) and no new trial starts.

The counts live in a small JSON file in the sweep's directory, written at every report, so a
`--resume` goes on from what the sweep had spent instead of from zero (Tune restores the
stopper object as it was pickled at the start). Each trial's count is its *latest* step, so
replaying a restored trial's reports cannot count anything twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ray.tune import Stopper

from trainers import names

BUDGET_FILE = "budget_spent.json"


class ComputeBudget(Stopper):
    def __init__(self, max_steps: int, seeds: int, sweep_path: Path) -> None:
        self.max_steps = max_steps
        self.seeds = seeds
        self.file = Path(sweep_path) / BUDGET_FILE
        self._steps: dict[str, float] | None = None  # loaded lazily: also after a restore

    def _counts(self) -> dict[str, float]:
        if self._steps is None:
            self._steps = read_counts(self.file)
        return self._steps

    def spent(self) -> float:
        """Generator steps (seeds counted) the sweep's trials have reported so far."""
        return sum(self._counts().values())

    def __call__(self, trial_id: str, result: dict) -> bool:
        counts = self._counts()
        counts[trial_id] = float(result.get(names.STEPS_TRAINED,
                                            result.get(names.STEP, 0) * self.seeds))
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(counts), encoding="utf-8")
        os.replace(tmp, self.file)  # atomic: a killed driver leaves the old counts whole
        return False  # single trials are ASHA's business; only the total stops the sweep

    def stop_all(self) -> bool:
        return self.spent() >= self.max_steps

    def __getstate__(self) -> dict:
        # Pickled into Tune's experiment state at the start: the counts stay in the file.
        return {**self.__dict__, "_steps": None}


def read_counts(file: Path) -> dict[str, float]:
    """The per-trial counts a ComputeBudget saved; {} when there are none yet."""
    try:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
