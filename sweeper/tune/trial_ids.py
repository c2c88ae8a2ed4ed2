"""How a fused trial's settings are named and reported (no Ray here: the driver's
bookkeeping and `recovery.py` use it too).

An unfused Tune trial trains one setting, named by the Tune trial id. A fused trial
(`sweeper run --fuse P`) trains P, named `<Tune trial id>.<j>`: each has its own Optuna trial
(user attribute `tune_trial_id`), its own MLflow trial run (tag `gan_sweeper.trial_id`) and
its own row in every table. Tune's ids hold no dot, so the trial is recovered from the name.
"""

from __future__ import annotations

import json
from typing import Any

# The result key carrying an unfused trial's MLflow run id to the driver.
RUN_ID = "mlflow_run_id"
# A fused trial's config holds its settings' params under this key; an unfused trial's
# config is the setting's params themselves, as before fusing.
FUSED = "settings"
# The result key of a fused trial: each setting's id, status ("running", "finished",
# "stopped_early"), step, MLflow run id and aggregate metrics, as JSON.
SETTINGS = "settings_json"


def setting_ids(trial_id: str, params: dict[str, Any]) -> list[str]:
    """The ids of a trial's settings: the Tune trial id itself when it trains one."""
    if FUSED not in params:
        return [trial_id]
    return [f"{trial_id}.{j}" for j in range(len(params[FUSED]))]


def tune_trial_of(setting_id: str) -> str:
    """The Tune trial a setting id belongs to."""
    return setting_id.split(".", 1)[0]


def fused_settings(result: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A fused trial's per-setting summaries from one of its results, or None for an unfused
    trial's result."""
    text = result.get(SETTINGS)
    return json.loads(text) if isinstance(text, str) else None


def summary(setting_id: str, status: str, step: int, run_id: str | None,
            metrics: dict[str, float]) -> dict[str, Any]:
    """One setting's entry in a fused trial's SETTINGS: the one shape every reader expects."""
    return {"id": setting_id, "status": status, "step": int(step), "run_id": run_id,
            "metrics": metrics}
