"""One Tune trial = one proposed setting, trained with k seeds in lockstep.

The seeds train as one batched population where that pays (`trainers.members`).

The seeds advance together from one evaluation step to the next, so every Tune report (and so
every ASHA decision) sees the setting's aggregate over all its seeds at the same step. The
final report alone carries `objective`: a trial that ASHA stops early never reports it, and
Optuna is told the trial was PRUNED instead of learning from a truncated value.

MLflow layout: the sweep's parent run -> one run per trial (aggregates) -> one run per seed
(the full config, curves, sample plots). Runs are found again by a stable key, and steps that
were already logged are skipped, so a retried or resumed trial never duplicates anything.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from sweeper.analyse import objective
from sweeper.analyse.objective import DEFAULT_OBJECTIVE
from sweeper.track import store, tags
from sweeper.track.member_runs import MemberRuns, config_params, step_artifact
from sweeper.track.metric_keys import metrics_of
from trainers import names
from trainers.config import ConfigError, make_config
from trainers.loop import set_threads
from trainers.members import Members, load_members, make_members, member_done, save_members
from trainers.quality import DEFAULT_RULE, SuccessRule

# Sample plots go to MLflow at the first evaluation (so a trial that ASHA stops early still
# has one), then every this many evaluations, and at the end. Image grids are worth it at
# every evaluation (collapse shows at a glance); a 2D scatter costs ~0.15 s per seed, which
# would be 10-20% of a toy trial's evaluation interval, so those come every 4th.
PLOT_EVERY_EVALS = {"image": 1, "points": 4}
# The result key carrying the trial's MLflow run id to the driver.
RUN_ID = "mlflow_run_id"


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides the sampled params (picklable, sent once)."""

    sweep: str  # sweep (MLflow experiment) name
    sweep_key: str  # filter-safe key of the sweep
    fixed: dict[str, Any]
    seeds: tuple[int, ...]
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    cpus_per_trial: float
    spool_dir: str  # where metrics go if MLflow stays unreachable
    rule: SuccessRule = DEFAULT_RULE  # judges each seed's seed_success
    objective: str = DEFAULT_OBJECTIVE  # the objective's tie-breaker: quality or fid
    batch_seeds: bool = True  # the seeds as one population (False: one after another)


def run_trial(params: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable."""
    store.quiet_http_retries()
    store.quiet_store_errors(ctx.spool_dir)
    # Ray logs a line per checkpoint at INFO; with one checkpoint per evaluation that drowns
    # the progress table.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    set_threads(max(1, int(ctx.cpus_per_trial)))
    trial_id = tune.get_context().get_trial_id()
    values = {**ctx.fixed, **params}
    if "device" not in values:
        # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU share; no share means CPU.
        values["device"] = "cuda" if _ray_gpu_ids() else "cpu"
    configs = [make_config({**values, "seed": s}) for s in ctx.seeds]
    latest: list[dict[str, float]] = [{} for _ in configs]
    finished = [False] * len(configs)  # members whose last metrics are logged
    evals = 0
    checkpoint = tune.get_checkpoint()
    log = None
    try:
        members = _restore(checkpoint, len(configs), values["device"], ctx.rule)
        if members is None and checkpoint is not None:
            final = _finished_result(ctx, trial_id)
            if final is not None:
                tune.report(final)
                return
        # Opening the runs marks them running again, so only once the trial really trains.
        log = _TrialLogs(ctx, trial_id, params, configs)
        if members is None:
            members = make_members(configs, ctx.rule, batched=ctx.batch_seeds)
        else:  # retried after a failure, or resumed: continue every seed where it stopped
            log.trial_logger.set_tags({tags.TAG_RESTORED_FROM: str(members.step)})
        while True:
            members.train_until(members.next_eval_step())
            latest = members.evaluate()
            moved = [not f for f in finished]  # members with new metrics at this evaluation
            # A member that finished or diverged is logged once; steps logged before a
            # restart are skipped by the logger.
            log.seeds.log_metrics(latest, moved)
            finished = [f or member_done(m, c)
                        for f, m, c in zip(finished, latest, configs, strict=True)]
            evals += 1
            done = members.done
            agg = {**objective.aggregate(latest, ctx.objective), names.STEP: float(members.step),
                   # The compute spent: a diverged seed stops counting where it stopped.
                   names.STEPS_TRAINED: float(sum(m.get(names.STEP, 0) for m in latest))}
            if done:
                agg[names.OBJECTIVE] = agg[names.RUNNING_OBJECTIVE]
            every = PLOT_EVERY_EVALS.get(members.data.kind, 1)
            log.trial_metrics(members.step, agg, plots=done or (evals - 1) % every == 0,
                              members=members, latest=latest, moved=moved)
            if done:
                # Close the runs before the final report: once Tune has the last result it
                # may end this actor at once (ASHA stops trials that reach max_t).
                log.close(latest, status="finished")
            with tempfile.TemporaryDirectory() as d:
                save_members(members, d)
                tune.report({**agg, RUN_ID: log.trial_run_id or ""},
                            checkpoint=tune.Checkpoint.from_directory(d))
            if done:
                return
    except Exception as e:
        log = log or _TrialLogs(ctx, trial_id, params, configs)
        log.close(latest, status="error", error=e)
        raise


def _finished_result(ctx: TrialContext, trial_id: str) -> dict[str, Any] | None:
    """The final result of a trial whose MLflow run already finished with its objective, or
    None. A setting can finish its budget (runs closed, objective logged) just before a stop
    lands, while Tune's snapshot still has it running; if its checkpoint is then lost or
    damaged, retraining from step 0 would be cut short by Tune at the budget it already
    reached, and Optuna would record a PRUNED setting that MLflow shows finished. Reporting
    the logged result ends it the way it ended the first time."""
    try:
        run = store.find_run(store.client(ctx.tracking_uri), ctx.experiment_id,
                             _trial_key(ctx, trial_id))
    except Exception:  # noqa: BLE001 - MLflow unreachable: the trial trains again instead
        return None
    if (run is None or run.info.status != "FINISHED"
            or run.data.tags.get(tags.TAG_STATUS) != "finished"):
        return None
    final = metrics_of(run)
    return {**final, RUN_ID: run.info.run_id} if names.OBJECTIVE in final else None


def _trial_key(ctx: TrialContext, trial_id: str) -> str:
    """The key that finds a trial's MLflow run again (its seed runs' keys extend it)."""
    return store.safe_key("trial", ctx.sweep_key, trial_id)


def _restore(checkpoint, seeds: int, device: str,
             rule: SuccessRule = DEFAULT_RULE) -> Members | None:
    """The seeds' members from a Tune checkpoint; None to start over. An empty checkpoint
    is how a resume marks a trial whose checkpoint was lost (see recovery.py); a damaged one
    (cut off, overwritten, not ours) is treated the same, with a warning, instead of failing
    the trial on every retry: training is deterministic given the seeds, and steps already
    logged are not logged again."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        try:
            return load_members(d, seeds, device=device, rule=rule)
        except ConfigError as e:
            logging.getLogger(__name__).warning("%s; the trial starts over from step 0", e)
            return None


def _ray_gpu_ids() -> list:
    import ray

    try:
        return list(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - outside a Ray worker there are no GPUs assigned
        return []


class _TrialLogs:
    """The trial's MLflow runs (setting + one per seed), found by key or created on first
    contact with the server. During an outage everything stays buffered (see RunLogger)."""

    def __init__(self, ctx: TrialContext, trial_id: str, params: dict[str, Any],
                 configs: list) -> None:
        self.client = store.client(ctx.tracking_uri)
        node_ip, node_id = _node()
        key = _trial_key(ctx, trial_id)
        # Node and status tags are rewritten at every (re)start: a retry may run elsewhere.
        run_tags = {tags.TAG_SWEEP: ctx.sweep, tags.TAG_TRIAL: trial_id,
                tags.TAG_NODE: node_ip, tags.TAG_NODE_ID: node_id,
                tags.TAG_STATUS: "running"}
        spool = Path(ctx.spool_dir) / f"{trial_id}.jsonl"
        self.trial_logger = store.RunLogger(
            self.client, spec=store.RunSpec(
                ctx.experiment_id, key, _run_name(params, trial_id),
                {**run_tags, tags.TAG_KIND: "trial"}, parent_run_id=ctx.parent_run_id),
            params={**config_params(configs[0]), "seeds": len(configs)}, tags=run_tags,
            spool=spool)
        self.seeds = MemberRuns([
            store.RunLogger(
                self.client, spec=store.RunSpec(
                    ctx.experiment_id, store.safe_key(key, "seed", cfg.seed),
                    f"{trial_id}-seed{cfg.seed}",
                    {**run_tags, tags.TAG_KIND: "seed", tags.TAG_SEED: str(cfg.seed)},
                    parent_key=key),
                params=config_params(cfg), tags={**run_tags, tags.TAG_SEED: str(cfg.seed)},
                spool=spool)
            for cfg in configs])
        self.trial_logger.ensure_run()  # early, so the run id reaches Tune's first report

    @property
    def trial_run_id(self) -> str | None:
        return self.trial_logger.run_id

    def trial_metrics(self, step: int, metrics: dict[str, float], *, plots: bool,
                      members: Members, latest: list[dict[str, float]],
                      moved: list[bool]) -> None:
        """Send this evaluation's metrics (one log_batch per run) and, every few evaluations,
        a sample plot per seed (~0.1 s each) that shows how collapse develops.

        Metrics are sent before every Tune report, never held across one: once Tune has a
        result, ASHA may end this actor, and a buffer would die with it.
        """
        self.trial_logger.log_metrics(step, metrics)
        if plots:
            self.seeds.log_samples(members, latest, moved=moved, artifact=step_artifact,
                                   title=lambda cfg, m: f"{cfg.loss}, seed {cfg.seed}, "
                                                        f"step {int(m[names.STEP])}")
        self.seeds.flush()
        self.trial_logger.flush()

    def close(self, latest: list[dict[str, float]], *, status: str,
              error: Exception | None = None) -> None:
        self.seeds.close(latest, status)
        if error is not None:
            self.trial_logger.log_text("".join(traceback.format_exception(error)), "error.txt")
        self.trial_logger.close(status)


def _run_name(params: dict[str, Any], trial_id: str) -> str:
    loss = params.get("loss")
    return f"{trial_id}-{loss}" if loss else trial_id


def _node() -> tuple[str, str]:
    """(node IP, Ray node id). Nodes on one host share an IP; the id tells them apart."""
    try:
        import ray

        return ray.util.get_node_ip_address(), ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray (never in a sweep): fall back to the host
        return socket.gethostname(), "local"
