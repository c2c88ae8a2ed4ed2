"""Bookkeeping in MLflow around Tune: deliver what trials spooled during an outage, and tag
the trial runs Tune abandoned or a stop signal cut off, so the records say how each ended."""

from __future__ import annotations

import sys
from pathlib import Path

from sweeper.track import store, tags
from sweeper.tune.trial_ids import tune_trial_of


def deliver_spool(uri: str, spool_dir: Path) -> None:
    """Send what trials could not deliver during a tracking outage (see store.py)."""
    if not spool_dir.is_dir():
        return
    sent, _left = store.deliver_spooled(store.client(uri), spool_dir)
    if sent:  # what is left is named by the command's closing line (`undelivered`)
        print(f"delivered {sent} run record(s) kept during a tracking outage",
              file=sys.stderr)


def undelivered(spool_dir: Path) -> int:
    """Run records still waiting in the sweep's spool for the tracking store."""
    if not spool_dir.is_dir():
        return 0
    return sum(1 for f in spool_dir.glob("*.jsonl")
               for line in f.read_text(encoding="utf-8").splitlines() if line.strip())


def mark_abandoned_runs(uri: str, exp_id: str, known_trials: set) -> int:
    """Tag trial runs (and their seed runs) that Tune no longer knows as `abandoned`.

    A trial that starts after Tune's last experiment snapshot and is cut off by a driver
    crash is unknown to the restored experiment; Tune asks for a fresh setting in its place.
    Its partial MLflow run stays for the record, marked so analyses leave it out.
    `known_trials` holds Tune trial ids and setting ids (a fused trial's settings).
    """
    def unknown(t: dict) -> bool:
        sid = t.get(tags.TAG_TRIAL) or ""
        return sid not in known_trials and tune_trial_of(sid) not in known_trials

    return mark_trial_runs(uri, exp_id, unknown, "abandoned", "KILLED")


def mark_interrupted_runs(uri: str, exp_id: str, unfinished: set) -> int:
    """Tag `interrupted` (state KILLED) the runs of the trials a stop signal cut off, and
    any trial run still marked running (a forced stop may beat Tune's last snapshot); the
    resume reopens them and logs on from the trial's last checkpoint. A fused trial's
    settings that halving already stopped have ended: they keep `stopped_early` (the
    resume tells Optuna PRUNED for them, from the checkpoint or from MLflow)."""
    def cut_off(t: dict) -> bool:
        status = t.get(tags.TAG_STATUS)
        return status != "stopped_early" and (
            tune_trial_of(t.get(tags.TAG_TRIAL) or "") in unfinished or status == "running")

    return mark_trial_runs(uri, exp_id, cut_off, "interrupted", "KILLED")


def mark_trial_runs(uri: str, exp_id: str, select, status: str, state: str) -> int:
    """Give the trial runs whose tags `select` accepts, and their seed runs, this status tag
    and MLflow state. Trial runs that finished or were abandoned are left alone."""
    client = store.client(uri)
    trials = client.search_runs([exp_id], max_results=5000,
                                filter_string=f"tags.`{tags.TAG_KIND}` = 'trial'")
    count = 0
    for r in trials:
        if (not select(r.data.tags)
                or r.data.tags.get(tags.TAG_STATUS) in ("finished", "abandoned")):
            continue
        children = client.search_runs(
            [exp_id], filter_string=f"tags.`{tags.PARENT_TAG}` = '{r.info.run_id}'")
        for rid in [r.info.run_id, *(c.info.run_id for c in children)]:
            client.set_tag(rid, tags.TAG_STATUS, status)
            client.set_terminated(rid, state)
        count += 1
    return count


def while_store_works(mark, *args) -> int:
    """A bookkeeping pass over MLflow that a failing store skips (0 marked). Its one line
    was said when the failure was logged (store.quiet_store_errors), and the runs it would
    have marked are marked by the `--resume` that delivers the spooled results."""
    try:
        return mark(*args)
    except Exception:  # noqa: BLE001 - any tracking failure: the closing line says what to do
        return 0
