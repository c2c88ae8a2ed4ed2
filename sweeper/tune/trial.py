"""One Tune trial = one proposed setting, or with `sweeper run --fuse P` P settings of one
shape, trained with k seeds each in lockstep: `SweepTrial`, a Ray class trainable whose
`step` is one evaluation interval.

The members train as one batched population where that pays (`trainers.members`). A fused
trial halves its settings at ASHA's rungs (`halving.py`): the cut ones leave the population
and end like a setting ASHA stops; each setting keeps its own MLflow runs (`trial_ids.py`).

The seeds advance together from one evaluation step to the next, so every Tune report (and so
every ASHA decision) sees the setting's aggregate over all its seeds at the same step. The
final report alone carries `objective`: a trial that ASHA stops early never reports it, and
Optuna is told the trial was PRUNED instead of learning from a truncated value.

MLflow layout: the sweep's parent run -> one run per trial (aggregates) -> one run per seed
(the full config, curves, sample plots). Runs are found again by a stable key, and steps that
were already logged are skipped, so a retried or resumed trial never duplicates anything.
"""

from __future__ import annotations

import json
import logging
import socket
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune
from ray.tune.result import DONE

from sweeper.analyse import objective
from sweeper.analyse.objective import DEFAULT_OBJECTIVE
from sweeper.track import store, tags
from sweeper.track.member_runs import MemberRuns, config_params, step_artifact
from sweeper.track.metric_keys import metrics_of
from sweeper.tune import halving
from sweeper.tune.trial_ids import FUSED, RUN_ID, SETTINGS, setting_ids, summary
from trainers import names
from trainers.config import ConfigError, make_config
from trainers.loop import set_threads
from trainers.members import Members, load_members, make_members, member_done, save_members
from trainers.population import evaluations
from trainers.quality import DEFAULT_RULE, SuccessRule

# Sample plots go to MLflow at the first evaluation (so a trial that ASHA stops early still
# has one), then every this many evaluations, and at the end. Image grids are worth it at
# every evaluation (collapse shows at a glance); a 2D scatter costs ~0.15 s per seed, which
# would be 10-20% of a toy trial's evaluation interval, so those come every 4th.
PLOT_EVERY_EVALS = {"image": 1, "points": 4}


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
    # Successive halving inside a fused trial (sweeper/tune/halving.py): the rung steps
    # (none without early stopping) and the fraction 1/reduction_factor kept at each.
    rungs: tuple[int, ...] = ()
    reduction_factor: int = 3


# Beside the population in a fused trial's checkpoint: which settings are still training.
_SETTINGS_FILE = "settings.json"


class _Setting:
    """One setting of a trial: its k seeds' configs and runs, and how it stands."""

    def __init__(self, ctx: TrialContext, sid: str, params: dict[str, Any],
                 default_device: str) -> None:
        self.sid, self.params = sid, params
        values = {**ctx.fixed, **params}
        values.setdefault("device", default_device)
        self.configs = [make_config({**values, "seed": s}) for s in ctx.seeds]
        self.latest: list[dict[str, float]] = [{} for _ in self.configs]
        self.finished = [False] * len(self.configs)  # seeds whose last metrics are logged
        self.agg: dict[str, float] = {}
        self.log: _TrialLogs | None = None
        self.summary: dict[str, Any] | None = None  # once it has ended

    def measured(self, latest: list[dict[str, float]], step: int, objective_name: str,
                 done: bool) -> list[bool]:
        """Take this evaluation's per-seed metrics; returns which seeds moved since the
        last one (a seed that finished or diverged is logged once)."""
        moved = [not f for f in self.finished]
        self.latest = latest
        self.finished = [f or member_done(m, c)
                         for f, m, c in zip(self.finished, latest, self.configs, strict=True)]
        self.agg = {**objective.aggregate(latest, objective_name), names.STEP: float(step),
                    # The compute spent: a diverged seed stops counting where it stopped.
                    names.STEPS_TRAINED: float(sum(m.get(names.STEP, 0) for m in latest))}
        if done:
            self.agg[names.OBJECTIVE] = self.agg[names.RUNNING_OBJECTIVE]
        return moved

    def end(self, status: str, step: int) -> None:
        """Close the runs (`finished`, or `stopped_early` at a rung) and keep a summary."""
        if status == "stopped_early" and self.log is not None:
            self.log.stopped_at(step)
        if self.log is not None:
            self.log.close(self.latest, status=status)
        self.summary = self.state(status, step)

    def state(self, status: str = "running", step: int | None = None) -> dict[str, Any]:
        """Its entry in the trial's report (`trial_ids.summary`)."""
        return summary(self.sid, status, int(self.agg.get(names.STEP, 0)) if step is None
                       else step, self.log.trial_run_id if self.log else None, self.agg)


class SweepTrial(tune.Trainable):
    """The Tune trainable: one setting, or with `--fuse` several of one shape, their seeds
    trained as one population. Each `step` trains to the next evaluation, logs it to MLflow,
    halves a fused trial's settings at a rung, and returns the report; Tune checkpoints
    after every step (`save_checkpoint`) and restores a retried or resumed trial through
    `load_checkpoint`. Whatever fails in a step closes the settings' runs as `error` first."""

    def setup(self, config: dict[str, Any], ctx: TrialContext) -> None:
        store.quiet_http_retries()
        store.quiet_store_errors(ctx.spool_dir)
        # Ray logs a line per checkpoint at INFO; with one checkpoint per evaluation that
        # drowns the progress table.
        logging.getLogger("ray.train").setLevel(logging.WARNING)
        set_threads(max(1, int(ctx.cpus_per_trial)))
        self.ctx, self.fused = ctx, FUSED in config
        # Where the space sets no device: Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU
        # share, and no share means CPU.
        gpu = "cuda" if _ray_gpu_ids() else "cpu"
        self.settings = [_Setting(ctx, sid, p, gpu) for sid, p in zip(
            setting_ids(self.trial_id, config), config[FUSED] if self.fused else [config],
            strict=True)]
        self.alive = list(self.settings)  # the settings still training (halving cuts some)
        self.members: Members | None = None  # built at the first step, unless restored
        self.restored: dict[str, Any] | None = None  # a checkpoint's settings record
        self.final: dict[str, Any] | None = None  # the logged result of an ended trial
        self.cuts, self.removed_steps, self.evals = 0, 0.0, 0
        # The outer loop over the population; None until the first step opens the runs.
        self.evaluations: Iterator[list[dict[str, float]]] | None = None

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """A reused actor (`--reuse-actors`) takes the next trial as a fresh one. Called on
        the class `tune.with_parameters` made, whose `setup(config)` adds the context."""
        self.setup(new_config)  # type: ignore[call-arg]
        return True

    def load_checkpoint(self, checkpoint: str) -> None:
        ids = [s.sid for s in self.settings]
        k = len(self.ctx.seeds)
        self.members, self.restored = _restore(checkpoint, ids, k,
                                               self.settings[0].configs[0].device,
                                               self.ctx.rule)
        if self.members is None:
            self.final = _finished_result(self.ctx, ids, self.fused)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        if self.members is None:  # an ended trial reported its logged result: nothing to keep
            return
        save_members(self.members, checkpoint_dir)
        if self.fused:
            _write_json(Path(checkpoint_dir) / _SETTINGS_FILE, {
                "alive": [s.sid for s in self.alive], "cuts": self.cuts,
                "removed_steps": self.removed_steps,
                "ended": [s.summary for s in self.settings if s.summary is not None]})

    def step(self) -> dict[str, Any]:
        if self.final is not None:
            return {**self.final, DONE: True}
        try:
            if self.evaluations is None:
                self._start()
            return self._evaluation()
        except Exception as e:
            for s in self.alive:
                if s.summary is None:
                    s.log = s.log or _TrialLogs(self.ctx, self.trial_id, s.sid, s.params,
                                                s.configs)
                    s.log.close(s.latest, status="error", error=e)
            raise

    def _start(self) -> None:
        """Open the runs (which marks them running again, so only once the trial really
        trains) and the population: new, or where the checkpoint left it."""
        ctx, state = self.ctx, self.restored or {}
        self.cuts, self.removed_steps = state.get("cuts", 0), state.get("removed_steps", 0.0)
        ended = {e["id"]: e for e in state.get("ended", [])}
        for s in self.settings:
            s.summary = ended.get(s.sid)
        self.alive = [s for s in self.settings if s.summary is None]
        for s in self.alive:
            s.log = _TrialLogs(ctx, self.trial_id, s.sid, s.params, s.configs)
        if self.members is None:
            self.members = make_members([c for s in self.alive for c in s.configs], ctx.rule,
                                        batched=ctx.batch_seeds)
        else:  # retried after a failure, or resumed: continue every seed where it stopped
            for s in self.alive:
                s.log.trial_logger.set_tags({tags.TAG_RESTORED_FROM: str(self.members.step)})
        self.evaluations = evaluations(self.members)

    def _evaluation(self) -> dict[str, Any]:
        """Train to the next evaluation and log it; the report for Tune."""
        ctx, members, k = self.ctx, self.members, len(self.ctx.seeds)
        per_member = next(self.evaluations)
        done, step = members.done, members.step
        every = PLOT_EVERY_EVALS.get(members.data.kind, 1)
        plots = done or self.evals % every == 0
        self.evals += 1
        samples = members.sample().cpu().numpy() if plots else None
        for i, s in enumerate(self.alive):
            moved = s.measured(per_member[i * k:(i + 1) * k], step, ctx.objective, done)
            s.log.seeds.log_metrics(s.latest, moved)
            s.log.trial_metrics(step, s.agg, plots=plots, members=members, first=i * k,
                                samples=samples, latest=s.latest, moved=moved)
        if not done and self.fused and halving.passed(ctx.rungs, step) > self.cuts:
            self._halve(step)
        if done:
            # Close the runs before the final report: once Tune has the last result it may
            # end this actor at once (ASHA stops trials that reach max_t).
            for s in self.alive:
                s.end("finished", step)
        if self.fused:
            report = _fused_result([s.summary or s.state() for s in self.settings],
                                   [s.agg for s in self.alive], step, self.removed_steps)
        else:
            report = {**self.settings[0].agg, RUN_ID: self.settings[0].log.trial_run_id or ""}
        return {**report, DONE: done}

    def _halve(self, step: int) -> None:
        """Successive halving at a rung: the settings below the top 1/eta end as stopped
        early and leave the population (the last setting standing goes on alone)."""
        self.cuts = halving.passed(self.ctx.rungs, step)
        keep = halving.survivors([s.agg[names.RUNNING_OBJECTIVE] for s in self.alive],
                                 self.ctx.reduction_factor)
        if len(keep) == len(self.alive):
            return
        for i, s in enumerate(self.alive):
            if i not in keep:
                self.removed_steps += s.agg[names.STEPS_TRAINED]
                s.end("stopped_early", step)
        k = len(self.ctx.seeds)
        self.members = self.members.keep([i * k + j for i in keep for j in range(k)])
        self.evaluations = evaluations(self.members)
        self.alive = [self.alive[i] for i in keep]


# Tune names a trial and its folder after the trainable (`run_trial_<id>_...`, which
# `results_table` and `progress` read) and restores a sweep only with a trainable of the
# name it saved: sweeps saved while the trial was a function trainable keep resuming.
SweepTrial.__name__ = "run_trial"
run_trial = SweepTrial  # the name older pickles and Tune know it by


def _fused_result(summaries: list[dict[str, Any]], alive: list[dict[str, float]], step: int,
                  removed_steps: float) -> dict[str, Any]:
    """A fused trial's report: the population's step and compute (`alive`: the aggregates
    of the settings still in it), the best running (and, at the end, final) objective, and
    every setting's own summary for the driver."""
    out: dict[str, Any] = {
        names.STEP: float(step),
        names.STEPS_TRAINED: removed_steps + sum(m[names.STEPS_TRAINED] for m in alive),
        names.RUNNING_OBJECTIVE: min(m[names.RUNNING_OBJECTIVE] for m in alive),
        SETTINGS: json.dumps(summaries),
    }
    finals = [m[names.OBJECTIVE] for m in alive if names.OBJECTIVE in m]
    if finals:
        out[names.OBJECTIVE] = min(finals)
    return out


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def _finished_result(ctx: TrialContext, ids: list[str], fused: bool) -> dict[str, Any] | None:
    """The final result of a trial whose MLflow runs already ended, or None. A setting can
    finish its budget (runs closed, objective logged) just before a stop lands, while
    Tune's snapshot still has it running; if its checkpoint is then lost or damaged,
    retraining from step 0 would be cut short by Tune at the budget it already reached, and
    Optuna would record a PRUNED setting that MLflow shows finished. Reporting the logged
    result ends it the way it ended the first time. A fused trial has ended when every
    setting's run has (finished, or stopped at a rung) and one finished."""
    try:
        client = store.client(ctx.tracking_uri)
        runs = [store.find_run(client, ctx.experiment_id, _trial_key(ctx, sid)) for sid in ids]
    except Exception:  # noqa: BLE001 - MLflow unreachable: the trial trains again instead
        return None
    ended = ("finished", "stopped_early") if fused else ("finished",)
    if any(r is None or r.info.status != "FINISHED"
           or r.data.tags.get(tags.TAG_STATUS) not in ended for r in runs):
        return None
    finals = [metrics_of(r) for r in runs]
    if not fused:
        final = finals[0]
        return {**final, RUN_ID: runs[0].info.run_id} if names.OBJECTIVE in final else None
    summaries = [summary(sid, r.data.tags[tags.TAG_STATUS], int(m.get(names.STEP, 0)),
                         r.info.run_id, m) for sid, r, m in zip(ids, runs, finals, strict=True)]
    done = [e["metrics"] for e in summaries
            if e["status"] == "finished" and names.OBJECTIVE in e["metrics"]]
    if not done:
        return None
    removed = sum(e["metrics"].get(names.STEPS_TRAINED, 0.0) for e in summaries
                  if e["status"] != "finished")
    return _fused_result(summaries, done, int(done[0].get(names.STEP, 0)), removed)


def _trial_key(ctx: TrialContext, setting_id: str) -> str:
    """The key that finds a setting's MLflow trial run again (its seed runs' keys extend
    it)."""
    return store.safe_key("trial", ctx.sweep_key, setting_id)


def _restore(folder: str | Path, ids: list[str], k: int, device: str,
             rule: SuccessRule = DEFAULT_RULE) -> tuple[Members | None, dict[str, Any]]:
    """The members (`ids`: the trial's settings, k seeds each) from a Tune checkpoint's
    folder and, for a fused trial, which settings still train; (None, {}) to start over. An
    empty checkpoint (an ended trial's) gives None; a damaged one (cut off, overwritten, not
    ours) too, with a warning, instead of failing the trial on every retry: training is
    deterministic given the seeds, and steps already logged are not logged again."""
    try:
        state = _read_settings_state(Path(folder) / _SETTINGS_FILE, ids)
        alive = len(state["alive"]) if state else len(ids)
        members = load_members(folder, alive * k, device=device, rule=rule)
        return members, (state or {}) if members is not None else {}
    except ConfigError as e:
        logging.getLogger(__name__).warning("%s; the trial starts over from step 0", e)
        return None, {}


def _read_settings_state(path: Path, ids: list[str]) -> dict[str, Any] | None:
    """A fused checkpoint's record of its settings, checked against the trial's own."""
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if (not set(state["alive"]) <= set(ids) or not state["alive"]
                or not {e["id"] for e in state["ended"]} <= set(ids)):
            raise ValueError("names settings this trial does not have")
        return state
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"checkpoint {path.parent} has a damaged {path.name} ({e})") from None


def _ray_gpu_ids() -> list:
    import ray

    try:
        return list(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - outside a Ray worker there are no GPUs assigned
        return []


class _TrialLogs:
    """The trial's MLflow runs (setting + one per seed), found by key or created on first
    contact with the server. During an outage everything stays buffered (see RunLogger)."""

    def __init__(self, ctx: TrialContext, trial_id: str, setting_id: str,
                 params: dict[str, Any], configs: list) -> None:
        self.client = store.client(ctx.tracking_uri)
        node_ip, node_id = _node()
        key = _trial_key(ctx, setting_id)
        # Node and status tags are rewritten at every (re)start: a retry may run elsewhere.
        run_tags = {tags.TAG_SWEEP: ctx.sweep, tags.TAG_TRIAL: setting_id,
                tags.TAG_NODE: node_ip, tags.TAG_NODE_ID: node_id,
                tags.TAG_STATUS: "running"}
        spool = Path(ctx.spool_dir) / f"{trial_id}.jsonl"
        self.trial_logger = store.RunLogger(
            self.client, spec=store.RunSpec(
                ctx.experiment_id, key, _run_name(params, setting_id),
                {**run_tags, tags.TAG_KIND: "trial"}, parent_run_id=ctx.parent_run_id),
            params={**config_params(configs[0]), "seeds": len(configs)}, tags=run_tags,
            spool=spool)
        self.seeds = MemberRuns([
            store.RunLogger(
                self.client, spec=store.RunSpec(
                    ctx.experiment_id, store.safe_key(key, "seed", cfg.seed),
                    f"{setting_id}-seed{cfg.seed}",
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
                      members: Members, first: int, samples: np.ndarray | None,
                      latest: list[dict[str, float]], moved: list[bool]) -> None:
        """Send this evaluation's metrics (one log_batch per run) and, every few evaluations,
        a sample plot per seed (~0.1 s each) that shows how collapse develops.

        Metrics are sent before every Tune report, never held across one: once Tune has a
        result, ASHA may end this actor, and a buffer would die with it.
        """
        self.trial_logger.log_metrics(step, metrics)
        if plots:
            self.seeds.log_samples(members, latest, moved=moved, artifact=step_artifact,
                                   first=first, samples=samples,
                                   title=lambda cfg, m: f"{cfg.loss}, seed {cfg.seed}, "
                                                        f"step {int(m[names.STEP])}")
        self.seeds.flush()
        self.trial_logger.flush()

    def stopped_at(self, step: int) -> None:
        """Tag the setting's runs with the rung step that stopped it (as the driver tags
        a trial ASHA stops)."""
        for logger in (self.trial_logger, *self.seeds.loggers):
            logger.set_tags({tags.TAG_STOPPED_AT: str(step)})

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
