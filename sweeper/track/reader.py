"""Load a sweep's MLflow runs into plain records for `sweeper stable/compare/report`.

One `search_runs` call per 1,000 runs of the experiment reads every sweep, trial, seed and
confirm run with its params, tags and latest metric values; metric histories are fetched
separately (`metric_history`), only for the few runs a figure needs. The experiment is looked
up by name with `get_experiment_by_name`, never spliced into a filter string, so names with
quotes are safe.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from sweeper.analyse.objective import OBJECTIVES, rule_from_params
from sweeper.analyse.stability import Setting
from sweeper.errors import UserError
from sweeper.track import store, tags
from sweeper.track.metric_keys import history, plain_metrics
from trainers.config import FIELDS, ConfigError, coerce
from trainers.quality import LEGACY_RULE, SuccessRule
from trainers.user_models import SOURCE_PARAM

# search_runs pages of this size (MLflow's documented maximum for one call is 50,000; 1,000
# keeps each response small over HTTP).
_PAGE = 1000
# Seed statuses of a run that trained to the end of its budget (diverged runs stop early by
# design, and that is their final state).
_DONE = ("finished", "diverged")


@dataclass(frozen=True)
class SeedRun:
    run_id: str
    seed: int
    status: str
    metrics: dict[str, float]  # the latest value of every metric


@dataclass(frozen=True)
class TrialRun:
    run_id: str
    trial_id: str
    status: str
    params: dict[str, Any]  # TrialConfig fields (of seed 0), typed
    expected_seeds: int
    seeds: tuple[SeedRun, ...]
    model_sha1: str = ""  # SHA-1 of a user model's file when the trial trained ("" if none)

    @property
    def complete(self) -> bool:
        """Trained to the full budget: finished, and every seed finished or diverged."""
        budget = self.params.get("steps", math.inf)
        return (self.status == "finished" and len(self.seeds) >= self.expected_seeds and all(
            s.status in _DONE and (s.status == "diverged" or s.metrics.get("step", -1) >= budget)
            for s in self.seeds))


@dataclass(frozen=True)
class ConfirmRun:
    run_id: str
    confirm_of: str
    seed: int
    status: str
    smoke: bool
    metrics: dict[str, float]


@dataclass(frozen=True)
class SweepRecords:
    experiment: str
    experiment_id: str
    tracking_uri: str
    parent_run_id: str | None
    parent_params: dict[str, str]
    trials: tuple[TrialRun, ...]
    confirms: tuple[ConfirmRun, ...]
    sampled: tuple[str, ...] = ()  # the search space's sampled params (from space.yaml)
    # The success rule the trainers judged seed_success by, and the sweep's objective (from
    # the parent run's params; sweeps made before they were recorded ran the legacy ones).
    rule: SuccessRule = LEGACY_RULE
    objective: str = "fid"

    def trial(self, run_id: str) -> TrialRun:
        return next(t for t in self.trials if t.run_id == run_id)

    def used_seeds(self) -> set[int]:
        """Every seed any run of this experiment trained with (sweep and confirm runs)."""
        out = {s.seed for t in self.trials for s in t.seeds if s.seed >= 0}
        return out | {c.seed for c in self.confirms}


def open_experiment(uri: str, name: str):
    """(client, checked uri, experiment id), or a one-line UserError."""
    # MLflow draws a progress bar for every artifact download; ours are a few small files.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if urlparse(uri).scheme == "sqlite":
        path = uri[len("sqlite:///"):]
        if path not in ("", ":memory:") and not Path(path).expanduser().exists():
            # Opening a missing file would silently create an empty tracking database.
            raise UserError(f"tracking database {Path(path).expanduser()} does not exist; pass "
                            "the --tracking-uri the sweep logged to")
    uri = store.check_tracking_uri(uri)
    client = store.client(uri)
    exp_id = store.experiment_id(client, name, create=False)
    if exp_id is None:
        known = [e.name for e in client.search_experiments(max_results=20)
                 if e.name != "Default"]
        hint = f" (experiments there: {', '.join(map(repr, known[:8]))})" if known else ""
        raise UserError(f"no MLflow experiment named {name!r} at {uri}{hint}; check "
                        "--experiment and --tracking-uri")
    return client, uri, exp_id


def load_sweep(uri: str, name: str) -> SweepRecords:
    """Every sweep/trial/seed/confirm run of experiment `name`, as plain records."""
    client, uri, exp_id = open_experiment(uri, name)
    runs = all_runs(client, exp_id)
    by_kind: dict[str, list] = {}
    for r in runs:
        by_kind.setdefault(r.data.tags.get(tags.TAG_KIND, ""), []).append(r)
    parents = by_kind.get("sweep", [])
    parent = parents[0] if parents else None
    seeds_of: dict[str, list[SeedRun]] = {}
    for r in by_kind.get("seed", []):
        seeds_of.setdefault(r.data.tags.get(tags.PARENT_TAG, ""), []).append(SeedRun(
            r.info.run_id, _int(r.data.tags.get(tags.TAG_SEED)),
            r.data.tags.get(tags.TAG_STATUS, "running"), plain_metrics(r.data.metrics)))
    trials = []
    for r in by_kind.get("trial", []):
        if r.data.tags.get(tags.TAG_STATUS) == "abandoned":
            continue  # cut off by a driver crash and re-run as another trial (sweep.py)
        params = typed_params(r.data.params)
        seeds = sorted(seeds_of.get(r.info.run_id, []), key=lambda s: s.seed)
        trials.append(TrialRun(
            r.info.run_id, r.data.tags.get(tags.TAG_TRIAL, r.info.run_id[:8]),
            r.data.tags.get(tags.TAG_STATUS, "running"), params,
            _int(r.data.params.get("seeds"), default=len(seeds)), tuple(seeds),
            r.data.params.get(SOURCE_PARAM, "")))
    trials.sort(key=lambda t: t.trial_id)
    confirms = tuple(ConfirmRun(
        r.info.run_id, r.data.tags.get(tags.TAG_CONFIRM_OF, ""), _int(r.data.tags.get(
            tags.TAG_SEED)), r.data.tags.get(tags.TAG_STATUS, "running"),
        r.data.tags.get(tags.TAG_SMOKE) == "1", plain_metrics(r.data.metrics))
        for r in by_kind.get(tags.KIND_CONFIRM, []))
    parent_params = dict(parent.data.params) if parent else {}
    try:
        rule = rule_from_params(parent_params) or LEGACY_RULE
    except (ConfigError, ValueError):
        raise UserError(f"the sweep run of {name!r} records a damaged success rule "
                        f"({', '.join(k for k in parent_params if k.startswith('success.'))})"
                        "; fix those params in MLflow or re-run the sweep") from None
    objective = parent_params.get("objective", "fid")
    return SweepRecords(name, exp_id, uri, parent.info.run_id if parent else None,
                        parent_params, tuple(trials), confirms,
                        sampled_params(client, parent.info.run_id) if parent else (),
                        rule=rule, objective=objective if objective in OBJECTIVES else "fid")


def sampled_params(client, parent_run_id: str) -> tuple[str, ...]:
    """The sampled parameter names of the sweep's space (its space.yaml artifact), or () if
    that cannot be read. Tables show these rather than every field that differs, since a
    loss's reference defaults (optimizer, betas) differ between losses without being swept."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(parent_run_id, "space.yaml", tmp)
            params = (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}).get(
                "params") or {}
        except Exception:  # noqa: BLE001 - an unreadable artifact only costs the column filter
            return ()
    return tuple(str(k) for k in params) if isinstance(params, dict) else ()


def all_runs(client, exp_id: str) -> list:
    """All active runs of an experiment, one search_runs call per page."""
    out, token = [], None
    while True:
        page = client.search_runs([exp_id], max_results=_PAGE, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def require_finished(records: SweepRecords) -> None:
    """A one-line UserError unless at least one trial finished."""
    if any(t.status == "finished" for t in records.trials):
        return
    counts: dict[str, int] = {}
    for t in records.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    seen = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trial runs"
    raise UserError(f"experiment {records.experiment!r} has no finished trials ({seen}); run "
                    "or resume the sweep (sweeper run --resume --experiment ...) first")


def settings(records: SweepRecords, *, confirmed: bool = True) -> list[Setting]:
    """One Setting per trial, from its seed runs' final metrics; missing seed runs count as
    seeds that measured nothing (failures). With `confirmed`, a trial that has confirm runs
    (not smoke tests) is represented by those fresh seeds instead."""
    fresh: dict[str, list[ConfirmRun]] = {}
    if confirmed:
        for c in records.confirms:
            if not c.smoke and c.status in _DONE:
                fresh.setdefault(c.confirm_of, []).append(c)
    out = []
    for t in records.trials:
        if t.run_id in fresh:
            runs = sorted(fresh[t.run_id], key=lambda c: c.seed)
            out.append(Setting(t.run_id, t.trial_id, t.params, [c.metrics for c in runs],
                               complete=True, source="confirm",
                               seed_ids=[c.seed for c in runs]))
            continue
        metrics = [s.metrics for s in t.seeds]
        metrics += [{}] * max(0, t.expected_seeds - len(metrics))
        out.append(Setting(t.run_id, t.trial_id, t.params, metrics, complete=t.complete,
                           seed_ids=[s.seed for s in t.seeds]))
    return out


def metric_history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric (plain name) of one run, by step."""
    hist = history(client, run_id, key)
    return sorted((int(m.step), float(m.value)) for m in hist)


def typed_params(raw: dict[str, str]) -> dict[str, Any]:
    """MLflow params are strings; turn the TrialConfig ones back into their field types."""
    out = {}
    for k, v in raw.items():
        if k in FIELDS:
            try:
                out[k] = coerce(k, v)
            except ValueError:
                out[k] = v
    return out


def _int(v: Any, default: int = -1) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default
