"""Making a crashed driver's Tune state restorable, and the Optuna study agree with it.

Ray Tune snapshots a sweep as three files per driver session (suffix = the session's start):
    experiment_state-<s>.json   trials, their statuses and latest checkpoints
    searcher-state-<s>.pkl      the OptunaSearch (which Optuna trial each Tune trial is)
    search_gen_state-<s>.json   trials created so far, and the concurrency limiter
The driver writes them into a staging folder in Ray's temp folder, then a background thread
copies them into the sweep directory. A driver killed at the wrong moment leaves the sweep
directory with a mix of old and new files, and can leave the snapshot naming a trial
checkpoint that Tune has already replaced and deleted. Each of these made `Tuner.restore`
crash with a KeyError or fail a trial; the functions here undo them before the restore, and
`reconcile_study` closes the books after it.

Trust: only the sweep directory the user named is ever read. Ray's temp folder is shared by
every user of the machine (a planted pickle there would run as whoever resumes), and a newer
snapshot there would silently override the folder the user restored; so its staging copies
are never looked at. Checking a pickle here walks its opcodes (`pickletools`), which runs no
code; only Tune's own restore unpickles the sweep directory's files.
"""

from __future__ import annotations

import json
import logging
import os
import pickletools
from pathlib import Path
from typing import Any

from sweeper.errors import UserError
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


def repair_tune_state(path: Path) -> list[str]:
    """Make the sweep directory's own snapshot restorable; returns the files rewritten.

    A damaged state file (cut off when a driver died, or overwritten) is fatal, with one line
    naming it; mixed-but-readable files (this session's experiment state beside a searcher
    state one snapshot older) are aligned here and left to `reconcile_study`.
    """
    for pattern in STATE_PATTERNS:
        for f in path.glob(pattern):
            if not _state_file_ok(f):
                raise UserError(f"{f} is damaged (cut off when a driver died, or overwritten); "
                                "this sweep cannot be resumed: restore the sweep folder from a "
                                "backup, or start the sweep again under another --experiment")
    aligned = _align_search_generator(path)
    return [aligned] if aligned else []


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


def _align_search_generator(path: Path) -> str | None:
    """Make the search generator's trial count and live set those of the experiment state.

    Written one after the other, the two can be a snapshot apart after a crash. A count
    behind the experiment state makes Tune create more trials than `--num-samples`, one
    ahead makes it create fewer; a trial missing from the concurrency limiter's live set
    finishes without Optuna hearing of it. Returns the file name if it was rewritten.
    """
    from ray import cloudpickle

    states = sorted(path.glob("experiment_state-*.json"), key=_suffix)
    if not states:
        return None
    gen = path / f"search_gen_state-{_suffix(states[-1])}.json"
    if not gen.exists():
        return None
    trials = [json.loads(t) for t, _ in
              json.loads(states[-1].read_text(encoding="utf-8"))["trial_data"]]
    live = {t["trial_id"] for t in trials if t.get("status") != "TERMINATED"}
    with gen.open("rb") as fh:
        state = cloudpickle.load(fh)
    changed = state["counter"] != len(trials)
    state["counter"] = len(trials)
    limiter = state.get("name:ConcurrencyLimiter")
    if limiter is not None and not limiter.get("batch") and limiter["live_trials"] != live:
        limiter["live_trials"] = live
        limiter["num_unfinished_live_trials"] = len(live)
        changed = True
    if not changed:
        return None
    tmp = gen.with_name(f".{gen.name}.tmp")
    tmp.write_bytes(cloudpickle.dumps(state))
    os.replace(tmp, gen)
    return gen.name


def _intact(fs, ckpt_dir: str) -> bool:
    import pyarrow.fs as pafs

    from trainers.members import checkpoint_complete

    infos = fs.get_file_info(pafs.FileSelector(ckpt_dir))
    return checkpoint_complete([i.base_name for i in infos
                                if i.type == pafs.FileType.File and i.size > 0])


def restore_missing_checkpoints(path: Path) -> list[str]:
    """Give every unfinished trial the checkpoint its snapshot names.

    Tune keeps one checkpoint per trial: it deletes the old one when a new one registers and
    writes the snapshot naming the new one a moment later. A driver killed in between leaves
    a snapshot naming a deleted checkpoint, and Tune then fails that trial on restore. The
    newer checkpoint is its sibling in the trial folder; it is copied under the old name, so
    the trial resumes from its real latest state (steps it re-runs were already logged to
    MLflow and are skipped). With no intact sibling, an empty folder makes the trial start
    over from step 0 (`run_trial` treats an empty checkpoint so), which gives the same
    result: training is deterministic given the seed.
    """
    import pyarrow.fs as pafs
    from ray.tune import ExperimentAnalysis

    fixed = []
    # It warns about trials that never reported (no result file): expected after a crash.
    log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        trials = ExperimentAnalysis(str(path)).trials
    finally:
        log.setLevel(level)
    for trial in trials:
        ckpt = trial.checkpoint
        if trial.status == "TERMINATED" or ckpt is None:
            continue
        fs = ckpt.filesystem
        if fs.get_file_info(ckpt.path).type != pafs.FileType.NotFound:
            continue
        parent = ckpt.path.rstrip("/").rsplit("/", 1)[0]
        siblings = sorted((i.path for i in fs.get_file_info(pafs.FileSelector(parent))
                           if i.type == pafs.FileType.Directory
                           and i.base_name.startswith("checkpoint_")), reverse=True)
        source = next((s for s in siblings if _intact(fs, s)), None)
        fs.create_dir(ckpt.path)
        if source is not None:
            pafs.copy_files(source, ckpt.path, source_filesystem=fs, destination_filesystem=fs)
        fixed.append(trial.trial_id)
    return fixed


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
