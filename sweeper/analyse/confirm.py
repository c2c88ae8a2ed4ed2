"""`sweeper stable --confirm N`: re-train the top settings with N fresh seeds.

A sweep picks its best settings from the same seeds it scores them on, so their estimates are
optimistic (the winner's curse). Re-training the winners with seeds the sweep never used gives
numbers that are not selected on; `sweeper stable` then shows those instead.

The runs train in this process, on one CPU thread: the settings x N fresh seeds that share a
shape train as one batched population (`trainers.members`), which needs no cluster and keeps
the command free of Ray. Each run is an MLflow run
with tag kind=confirm under the sweep's parent run, tagged with the trial it re-trains
(gan_sweeper.confirm_of), its seed, and its final status.

`--smoke-test` re-trains with the tiny smoke budget to check the pipeline; those runs carry
gan_sweeper.smoke=1 and never replace an estimate (their budget differs from the sweep's).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from sweeper.bars import train_members
from sweeper.track import store, tags
from sweeper.track.member_runs import MemberRuns, config_params
from sweeper.track.reader import SweepRecords, TrialRun
from sweeper.track.tags import KIND_CONFIRM, TAG_CONFIRM_OF, TAG_SMOKE
from trainers import names
from trainers.config import make_config
from trainers.data import dataset_shape
from trainers.loop import set_threads
from trainers.members import make_members, share_groups
from trainers.memory import check_run_fits
from trainers.model_check import check_model
from trainers.user_models import is_user_spec, source_digest


def fresh_seeds(records: SweepRecords, n: int) -> list[int]:
    """n seeds that no run of this experiment has trained with (sweep or earlier confirms)."""
    start = max(records.used_seeds(), default=-1) + 1
    return list(range(start, start + n))


def confirm_settings(records: SweepRecords, trial_run_ids: Sequence[str], n_seeds: int, *,
                     smoke: dict[str, Any] | None = None) -> list[str]:
    """Train each trial's setting with n_seeds fresh seeds; returns the new run ids.

    `smoke` (the CLI's smoke budget) overrides the budget fields and marks the runs as smoke.
    """
    if records.parent_run_id is None:
        from sweeper.errors import UserError

        raise UserError(f"experiment {records.experiment!r} has no sweep parent run to log "
                        "confirm runs under; was it made by `sweeper run`?")
    client = store.client(records.tracking_uri)
    seeds = fresh_seeds(records, n_seeds)
    # One thread: these small networks gain nothing from more, and on a shared machine extra
    # torch threads spin-wait on busy cores (measured 5-25x slower with 2 threads here).
    set_threads(1)
    jobs = []  # (trial id, trial run id, config) per run to train
    for rid in trial_run_ids:
        trial = records.trial(rid)
        # The setting exactly as the sweep trained it; the device is re-chosen for this machine.
        values = {**trial.params, "device": "auto", **(smoke or {})}
        jobs += [(trial.trial_id, rid, make_config({**values, "seed": seed},
                                                    fill_loss_defaults=False))
                 for seed in seeds]
    # A user's model file is imported to train: it must be the very file the sweep trained
    # (the SHA-1 it recorded), so a moved, edited or swapped file is one line, before anything
    # runs; then it is probed like any model.
    for rid in trial_run_ids:
        check_model_file(records.trial(rid))
    # Every setting x seed that can share one batched computation trains as one population:
    # each must fit in memory (estimated on the meta device) before a real model is built.
    groups = share_groups([cfg for _, _, cfg in jobs])
    for group in groups:
        cfg = jobs[group[0]][2]
        check_run_fits(cfg, dataset_shape(cfg), members=len(group))
    for cfg in {cfg.model: cfg for _, _, cfg in jobs}.values():
        check_model(cfg, dataset_shape(cfg))
    run_ids = {}
    for g, group in enumerate(groups, 1):
        run_ids.update(_train_group(client, records, [(i, *jobs[i]) for i in group],
                                    smoke=smoke is not None,
                                    group=f"group {g}/{len(groups)}" if len(groups) > 1 else ""))
    return [run_ids[i] for i in range(len(jobs))]


def check_model_file(trial: TrialRun) -> None:
    """Refuse to import a user's model file other than the one the trial recorded."""
    spec = str(trial.params.get("model", "auto"))
    if not is_user_spec(spec) or not trial.model_sha1:
        return
    now = source_digest(spec)
    if now != trial.model_sha1:
        from sweeper.errors import UserError

        state = "cannot be read" if not now else f"has SHA-1 {now[:12]}"
        raise UserError(f"model file of {spec[:200]} {state}, but trial {trial.trial_id} "
                        f"trained with SHA-1 {trial.model_sha1[:12]}; put that version back "
                        "(nothing was imported or trained)")


def _train_group(client, records: SweepRecords, jobs: list, *, smoke: bool,
                 group: str = "") -> dict[int, str]:
    loggers = {}
    for i, trial_id, trial_run_id, cfg in jobs:
        key = store.safe_key("confirm", records.parent_run_id, trial_id, "seed", cfg.seed)
        run_id, existed = store.find_or_create_run(
            client, records.experiment_id, key, name=f"{trial_id}-confirm-seed{cfg.seed}",
            parent_run_id=records.parent_run_id,
            tags={tags.TAG_KIND: KIND_CONFIRM, tags.TAG_SWEEP: records.experiment,
                  tags.TAG_TRIAL: trial_id, tags.TAG_SEED: str(cfg.seed),
                  TAG_CONFIRM_OF: trial_run_id, TAG_SMOKE: "1" if smoke else "0",
                  tags.TAG_STATUS: "running"})
        # A run found again by its key (a second confirm with the same records) continues
        # after the last step it logged instead of logging every step twice.
        done = store.RunLogger.last_logged_step(client.get_run(run_id)) if existed else -1
        loggers[i] = store.RunLogger(client, run_id, skip_through=done)
        loggers[i].log_params(config_params(cfg))
    runs = MemberRuns([loggers[i] for i, *_ in jobs])
    # Judged by the rule the sweep used.
    members = make_members([cfg for *_, cfg in jobs], records.rule)
    latest: list[dict[str, float]] = []
    desc = f"confirm {len(jobs)} runs" + (f" ({group})" if group else "")
    with runs.closed_on_error(lambda: latest):
        for _, latest in train_members(members, desc):
            runs.log_metrics(latest)
    runs.log_samples(members, latest, artifact=lambda m: "plots/samples_final.png",
                     title=lambda cfg, m: f"{cfg.loss}, confirm seed {cfg.seed}, "
                                          f"step {int(m[names.STEP])}")
    runs.close(latest, "finished")
    for (_, trial_id, _, cfg), final in zip(jobs, latest, strict=True):
        _print(trial_id, cfg.seed, final)
    return {i: logger.run_id for i, logger in loggers.items()}


def _print(trial_id: str, seed: int, final: dict[str, float]) -> None:
    print(f"confirm {trial_id} seed {seed}: "
          f"{'success' if final.get(names.SEED_SUCCESS) else 'FAIL'}, modes held "
          f"{final.get(names.MODES_HELD, 0):.0f}/{final.get(names.NUM_MODES, 0):.0f}, HQ "
          f"{final.get(names.HQ_FRACTION, 0):.3f}, score {final.get(names.SEED_SCORE, 1):.3f}, "
          f"fid {final.get(names.FID, float('nan')):.4g}"
          f"{' DIVERGED' if final.get(names.DIVERGED) else ''}", file=sys.stderr)
