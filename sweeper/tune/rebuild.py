"""Resuming a sweep from our own records when Tune's state cannot be trusted.

Tune's snapshot (tuner.pkl, experiment_state-*.json, the searcher and search-generator
states) is a cache of what the Optuna study and MLflow already hold: every finished setting,
its value and its runs. It is restored only after a driver that stopped cleanly (its last
snapshot written: a finished sweep, Ctrl-C, SIGTERM). After a driver that was killed or lost
its machine (`SESSION_FILE` left behind), or when the snapshot is gone or cut off, nothing
in it is edited or trusted: the sweep is rebuilt from the study and MLflow. Ray keeps a
newer copy in its temp folder, but that folder is shared by every user of the machine (a
pickle planted there would run as whoever resumes) and may be newer than the folder the user
restored, so it is never read. A rebuild:

- finished settings (COMPLETE, PRUNED or FAIL in Optuna) stay as they are: their Tune ids
  go to `kept_trials.json`, and their MLflow trial runs are their rows of the results table
  from then on;
- settings that were cut off mid-training (RUNNING in Optuna) are closed (FAIL, flagged
  orphaned, so TPE and the counts leave them out), their MLflow runs are marked abandoned,
  and the same settings are enqueued in the study, so they train again from step 0 under
  new Tune trials (training is deterministic given the seeds);
- Tune starts a fresh experiment in the same folder for the settings still to run, with the
  same study, so TPE learns from every finished one. The old Tune files are moved into a
  `replaced-<time>` folder beside them, for the record.

The price of never editing Tune's files: the settings a killed driver left mid-training start
again from step 0 instead of from their last checkpoint (the same result, as training is
deterministic; their partial runs stay in MLflow, tagged abandoned, which analyses skip).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.tune.recovery import (
    ORPHANED,
    STATE_PATTERNS,
    TUNE_TRIAL_ATTR,
    _state_file_ok,
    load_sweep_study,
)

# Written by a driver before Tune starts training and removed once Tune has stopped the way
# it means to (its last snapshot written): found by a resume, it says the driver before was
# killed, or its machine lost, at a moment Tune's files may disagree (a snapshot naming a
# checkpoint already deleted, a searcher state one snapshot older than the experiment's).
SESSION_FILE = "driver-session.open"


def open_session(path: Path) -> None:
    """Mark a driver session as running (see SESSION_FILE)."""
    (path / SESSION_FILE).write_text(f"pid {os.getpid()}\n", encoding="utf-8")


def close_session(path: Path) -> None:
    """Tune stopped cleanly: its files agree, and a resume may restore them."""
    (path / SESSION_FILE).unlink(missing_ok=True)


def tune_state_problem(path: Path) -> str | None:
    """What is wrong with the sweep folder's Tune state ("tuner.pkl is missing", ...), or
    None when a Tune restore can use it. Nothing is unpickled here (`_state_file_ok`)."""
    if (path / SESSION_FILE).exists():
        return ("the driver before this one stopped without closing Tune's state (killed, "
                "or its machine lost)")
    if not (path / "tuner.pkl").is_file():
        return "tuner.pkl is missing"
    if not any(path.glob("experiment_state-*.json")):
        return "experiment_state-*.json is missing"
    for pattern in STATE_PATTERNS:
        for f in sorted(path.glob(pattern)):
            if not _state_file_ok(f):
                return f"{f.name} is damaged"
    try:
        json.loads(max(path.glob("experiment_state-*.json")).read_text(encoding="utf-8"))[
            "trial_data"]
    except (OSError, ValueError, KeyError, TypeError):
        return "the newest experiment_state is not Tune's"
    return None


@dataclass(frozen=True)
class Rebuilt:
    finished: list[str]  # Tune trial ids of the settings that ended (kept as they are)
    cut: list[str]  # Tune trial ids of the settings cut off (trained again from step 0)
    # Of `finished`, those Optuna has PRUNED or FAIL: their MLflow runs say so too, even if
    # the stop landed before the driver tagged them.
    stopped: list[str]
    failed: list[str]


def ended_in_mlflow(uri: str, exp_id: str) -> dict[str, Any]:
    """Tune trial id -> how its MLflow trial run ended: the final objective, None (stopped
    early by ASHA), or "error". Runs still running, interrupted or abandoned are left out."""
    from sweeper.track import store, tags
    from sweeper.track.metric_keys import metrics_of
    from trainers import names

    client = store.client(uri)
    ended: dict[str, Any] = {}
    for r in client.search_runs([exp_id], max_results=5000,
                                filter_string=f"tags.`{tags.TAG_KIND}` = 'trial'"):
        tid, status = r.data.tags.get(tags.TAG_TRIAL), r.data.tags.get(tags.TAG_STATUS)
        final = metrics_of(r)
        if status == "finished" and names.OBJECTIVE in final:
            ended[tid] = final[names.OBJECTIVE]
        elif status in ("stopped_early", "error"):
            ended[tid] = None if status == "stopped_early" else "error"
    return ended


def prepare_rebuild(path: Path, name: str, ended: dict[str, Any]) -> Rebuilt:
    """Close the study's cut-off trials and enqueue their settings again, and move the Tune
    files aside (see the module's doc). A trial still RUNNING in Optuna whose MLflow run
    ended (`ended`, from `ended_in_mlflow`: a stop landed between the two) is told that
    outcome and kept, not trained again."""
    import optuna

    study = load_sweep_study(path, name)
    states = optuna.trial.TrialState
    finished, cut, stopped, failed = [], [], [], []
    for t in study.get_trials(deepcopy=False):
        orphaned = t.system_attrs.get(ORPHANED)
        tid = t.user_attrs.get(TUNE_TRIAL_ATTR)
        if t.state == states.RUNNING and tid in ended:
            outcome = ended[tid]
            if outcome == "error":
                study.tell(t.number, state=states.FAIL)
            elif outcome is None:
                study.tell(t.number, state=states.PRUNED)
            else:
                study.tell(t.number, float(outcome))
            finished.append(tid)
        elif t.state == states.RUNNING:
            study._storage.set_trial_system_attr(t._trial_id, ORPHANED, True)
            study.tell(t.number, state=states.FAIL)
            study.enqueue_trial(dict(t.params))
            if tid:
                cut.append(tid)
        elif t.state in (states.COMPLETE, states.PRUNED, states.FAIL) and not orphaned and tid:
            finished.append(tid)
            if t.state == states.PRUNED and tid not in ended:
                stopped.append(tid)
            elif t.state == states.FAIL and tid not in ended:
                failed.append(tid)
    kept = sorted(kept_trial_ids(path) | set(finished))
    tmp = path / f".{KEPT_FILE}.tmp"
    tmp.write_text(json.dumps(kept), encoding="utf-8")
    os.replace(tmp, path / KEPT_FILE)
    aside = path / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    for pattern in (*STATE_PATTERNS, "tuner.pkl"):
        for f in path.glob(pattern):
            aside.mkdir(exist_ok=True)
            f.rename(aside / f.name)
    return Rebuilt(finished, cut, stopped, failed)


KEPT_FILE = "kept_trials.json"


def kept_trial_ids(path: Path) -> set[str]:
    """Tune trial ids of the settings rebuilds kept: ended before the Tune experiment that
    now runs the sweep, so known to the study and MLflow but not to Tune."""
    try:
        return set(json.loads((path / KEPT_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return set()


def suggested_params(path: Path, name: str) -> dict[str, dict[str, Any]]:
    """Tune trial id -> the params Optuna suggested for it (a conditional param appears only
    where it was suggested, as in Tune's own config)."""
    return {t.user_attrs[TUNE_TRIAL_ATTR]: dict(t.params)
            for t in load_sweep_study(path, name).get_trials(deepcopy=False)
            if TUNE_TRIAL_ATTR in t.user_attrs}


def recorded_trials(uri: str, exp_id: str, trial_ids: list[str],
                    params: dict[str, dict[str, Any]]) -> list[tuple]:
    """(trial id, status, params, metrics, run id) for trials Tune no longer knows: their
    values from their MLflow trial runs, their params from the study (`params`); the driver
    makes them rows of its results table (`results_table.table_row`)."""
    from sweeper.track import store, tags
    from sweeper.track.metric_keys import metrics_of
    from trainers import names

    client = store.client(uri)
    runs = client.search_runs([exp_id], max_results=5000,
                              filter_string=f"tags.`{tags.TAG_KIND}` = 'trial'")
    by_trial = {r.data.tags.get(tags.TAG_TRIAL): r for r in runs
                if r.data.tags.get(tags.TAG_STATUS) != "abandoned"}
    found = []
    for tid in trial_ids:
        r = by_trial.get(tid)
        if r is None:
            continue
        m, status = metrics_of(r), r.data.tags.get(tags.TAG_STATUS, "")
        status = ("finished" if names.OBJECTIVE in m else "error" if status == "error"
                  else f"stopped@{int(m.get(names.STEP, 0))}")
        found.append((tid, status, params.get(tid, {}), m, r.info.run_id))
    return found
