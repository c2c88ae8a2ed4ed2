"""Driver-side Tune callback: marks trials that ASHA stopped, or that errored, in MLflow.

A stopped trial's runs end FINISHED, tagged `stopped_early` with the step it reached: it did
all the scheduler gave it. KILLED is kept for interruptions and FAILED for errors.

A fused trial ends the settings that halving stops itself; the driver marks those that
were still training when the trial stopped or failed.

A stopped trial's actor may be torn down before its own code can say so, so the driver does
it. The callback only tags runs that already exist (found by id), so replaying it on
`Tuner.restore` cannot create or duplicate anything.
"""

from __future__ import annotations

from ray.tune import Callback

from sweeper.track import store, tags
from sweeper.tune.trial_ids import RUN_ID, fused_settings
from trainers import names


def _running(settings: list[dict]) -> list[str]:
    """The MLflow run ids of a fused trial's settings that had not ended."""
    return [e["run_id"] for e in settings if e["status"] == "running" and e.get("run_id")]


class TrialStatusCallback(Callback):
    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client = None

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        stopped_at = {tags.TAG_STOPPED_AT: int(last[names.STEP])} if names.STEP in last else {}
        settings = fused_settings(last)
        if settings is not None:  # a fused trial's settings that were still training
            for run_id in _running(settings):
                self._mark(run_id, "stopped_early", "FINISHED", stopped_at)
        elif names.OBJECTIVE not in last:
            self._mark(last.get(RUN_ID), "stopped_early", "FINISHED", stopped_at)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        settings = fused_settings(last)
        for run_id in _running(settings) if settings is not None else [last.get(RUN_ID)]:
            self._mark(run_id, "error", "FAILED")

    def _mark(self, run_id: str | None, status: str, state: str,
              extra: dict | None = None) -> None:
        if not run_id:
            return
        try:
            if self._client is None:
                self._client = store.client(self.tracking_uri)
            children = self._client.search_runs(
                [self._client.get_run(run_id).info.experiment_id],
                filter_string=f"tags.`{tags.PARENT_TAG}` = '{run_id}'")
            for rid in [run_id, *(c.info.run_id for c in children)]:
                if self._client.get_run(rid).data.tags.get(tags.TAG_STATUS) == "diverged":
                    continue
                for k, v in {tags.TAG_STATUS: status, **(extra or {})}.items():
                    self._client.set_tag(rid, k, str(v))
                self._client.set_terminated(rid, state)
        except Exception:  # noqa: BLE001 - bookkeeping must never stop the sweep
            pass

    def __getstate__(self):
        return {"tracking_uri": self.tracking_uri, "_client": None}
