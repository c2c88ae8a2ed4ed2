"""The sweep folder's own Tune files, read without running anything, and the Optuna study
made to agree with how Tune's trials ended.

Ray Tune snapshots a sweep as three files per driver session (suffix = the session's start):
    experiment_state-<s>.json   trials, their statuses and latest checkpoints
    searcher-state-<s>.pkl      the OptunaSearch (which Optuna trial each Tune trial is)
    search_gen_state-<s>.json   trials created so far, and the concurrency limiter
Nothing here writes them: a driver killed mid-snapshot can leave them disagreeing, and a
resume then rebuilds the sweep from the study and MLflow instead (rebuild.py).
`reconcile_study` closes the study's books after a sweep that Tune ran to its end.

Trust: only the sweep directory the user named is ever read. Ray's temp folder is shared by
every user of the machine (a planted pickle there would run as whoever resumes), so its
staging copies are never looked at. Checking a pickle here walks its opcodes
(`pickletools`), which runs no code; only Tune's own restore unpickles the sweep directory's
files.
"""

from __future__ import annotations

import json
import pickletools
from pathlib import Path
from typing import Any

from sweeper.tune.trial_ids import tune_trial_of

STATE_PATTERNS = ("experiment_state-*.json", "searcher-state-*.pkl", "search_gen_state-*.json")
# Optuna user attribute linking a study trial to the Tune trial that owns it.
TUNE_TRIAL_ATTR = "tune_trial_id"
# Optuna system attribute of a trial closed as FAIL because no Tune trial will finish it;
# TPE's model and the counts leave it out.
ORPHANED = "gan_sweeper_orphaned"


def load_sweep_study(path: Path, name: str):
    """The sweep's Optuna study, in its folder's optuna.db."""
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{path / 'optuna.db'}")


def _state_file_ok(f: Path) -> bool:
    """Whether a state file is whole: JSON that parses, or a pickle whose opcodes run to its
    STOP (a cut-off pickle ends early). Nothing is unpickled, so nothing in it runs."""
    try:
        if f.stat().st_size == 0:
            return False
        if f.name.startswith("experiment_state-"):
            json.loads(f.read_text(encoding="utf-8"))
        else:  # searcher and search-generator states are cloudpickles
            with f.open("rb") as fh:
                for _ in pickletools.genops(fh):
                    pass
        return True
    except Exception:  # noqa: BLE001 - any unreadable state is damaged state
        return False


def _suffix(f: Path) -> str:
    return f.name.split("-", 1)[1].rsplit(".", 1)[0]


def snapshot_statuses(path: Path) -> dict[str, str]:
    """Tune trial id -> status in the sweep's newest experiment snapshot: what a resume will
    continue. A graceful stop (Ctrl-C, SIGTERM) writes it before stopping the trials, so the
    trials it cut off are RUNNING or PENDING there. Empty if there is no readable snapshot."""
    states = sorted(path.glob("experiment_state-*.json"), key=_suffix)
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text(encoding="utf-8"))
        trials = [json.loads(t) for t, _ in data["trial_data"]]
        return {t["trial_id"]: t["status"] for t in trials}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


ENDED = ("TERMINATED", "ERROR")


def find_trial(study, tune_trial_id: str):
    """The Optuna trial that Tune trial `tune_trial_id` was suggested as (or None)."""
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(TUNE_TRIAL_ATTR) == tune_trial_id:
            return t
    return None


def reconcile_study(path: Path, name: str, outcomes: dict[str, Any],
                    unfinished: set[str] = frozenset()) -> tuple[int, int]:
    """Bring the Optuna study in line with how Tune's trials ended, after `fit` returns.

    `outcomes` maps each setting (a Tune trial id, or a fused trial's setting id) to its
    final objective, None if it stopped early, or
    the string "error". A completion that a crash kept from Optuna (its searcher or
    concurrency-limiter state was one snapshot old) is told now, so TPE learns from every
    finished trial. Trials still RUNNING after that were suggested but never owned by a
    Tune trial (asked between the last snapshot and the crash): they are closed as FAIL and
    flagged ORPHANED (`gan_sweeper_orphaned`), which keeps them out of TPE's model and the counts.
    Trials in `unfinished` (cut off by an interruption; the resume continues them) stay
    RUNNING: Optuna has no paused state, and a finished Optuna trial cannot be told again,
    so closing them now would lose their real result.
    Returns (completions told late, orphans closed).
    """
    import optuna

    study = load_sweep_study(path, name)
    running = optuna.trial.TrialState.RUNNING
    told = 0
    for t in study.get_trials(deepcopy=False, states=(running,)):
        tid = t.user_attrs.get(TUNE_TRIAL_ATTR)
        if tid not in outcomes or tune_trial_of(tid) in unfinished:
            continue
        value = outcomes[tid]
        if value == "error":
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        elif value is None:
            study.tell(t.number, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(t.number, float(value))
        told += 1
    orphans = [t for t in study.get_trials(deepcopy=False, states=(running,))
               if tune_trial_of(t.user_attrs.get(TUNE_TRIAL_ATTR) or "") not in unfinished]
    for t in orphans:
        study._storage.set_trial_system_attr(t._trial_id, ORPHANED, True)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return told, len(orphans)
