"""`sweeper run`: Ray Tune schedules the trials, Optuna (TPE, or random search) proposes them,
ASHA stops the hopeless ones early, and MLflow records everything. Ray Tune is called here, in
`trial.py` (the trainable) and `search.py` (the searcher), so an API change in Ray touches
three files; `results_table.py` and `marks.py` turn Tune's results into rows and MLflow tags.

Sweep directory layout (default ./sweeps):
    <sweep-dir>/<name>/            Ray Tune's experiment (restored by --resume)
    <sweep-dir>/<name>/optuna.db   the Optuna study (RDBStorage, written by the driver only)
    <sweep-dir>/<name>/unsent/     metrics a trial could not deliver to MLflow
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sweeper.analyse import objective
from sweeper.analyse.objective import DEFAULT_OBJECTIVE
from sweeper.errors import UserError, one_line
from sweeper.paths import check_dir_writable
from sweeper.track import store, tags
from sweeper.track.metric_keys import history
from sweeper.track.mlflow_view import write_view
from sweeper.tune.interrupt import StopSignals
from sweeper.tune.marks import (
    deliver_spool,
    mark_abandoned_runs,
    mark_interrupted_runs,
    mark_trial_runs,
    while_store_works,
)
from sweeper.tune.rebuild import (
    SESSION_FILE,
    close_session,
    ended_in_mlflow,
    kept_trial_ids,
    open_session,
    prepare_rebuild,
    recorded_trials,
    suggested_params,
    tune_state_problem,
)
from sweeper.tune.recovery import ENDED, reconcile_study, snapshot_statuses
from sweeper.tune.results_table import format_table, rank, result_rows, table_row, trial_outcomes
from sweeper.tune.search import SEARCHES, optuna_search
from sweeper.tune.sizes import check_sweep_memory
from sweeper.tune.spaces import SearchSpace, parse_fuse
from trainers import names
from trainers.config import ConfigError
from trainers.data import dataset_shape
from trainers.model_check import check_model
from trainers.quality import DEFAULT_RULE, LEGACY_RULE, SuccessRule, rule_from_mapping
from trainers.user_models import is_user_spec, source_digest

# How long `--address` may take to answer before we give up with a clear error.
CONNECT_TIMEOUT_S = 10.0


def _o(default: Any, doc: str, *, flag: str | None = None, metavar: str | None = None) -> Any:
    """A SweepOptions field with its one-line doc; `sweeper run` makes its option from them
    (`flag` when the option is not simply --field-name, e.g. an on/off pair)."""
    return dataclasses.field(default=default,
                             metadata={"doc": doc, "flag": flag, "metavar": metavar})


@dataclass(frozen=True)
class SweepOptions:
    """Everything that defines one sweep. The fields with docs are `sweeper run`'s options
    (sweeper/cli/main.py generates them), so their defaults live here and nowhere else."""

    space: SearchSpace
    name: str
    num_samples: int = _o(16, "Settings (trials) to try.")
    # Equal-compute comparisons (benchmarks/search_efficiency.py) and fixed cloud budgets:
    # stop when the compute is spent, whatever num_samples says (sweeper/tune/budget.py).
    budget_steps: int = _o(0, "Stop the sweep once its trials have trained this many "
                           "generator steps in all (each trial's steps summed over its "
                           "seeds; ASHA-stopped trials count what they trained); 0 = no "
                           "limit.")
    max_concurrent: int = _o(0, "Trials at once; 0 = as many as the cluster's CPUs/GPUs fit.")
    seeds: int = _o(3, "Seeds per setting; the objective aggregates them (see docs/sweeps.md).")
    cpus_per_trial: float = _o(1.0, "CPU share per trial (also its torch threads).")
    gpus_per_trial: float = _o(0.0, "GPU share per trial, e.g. 0.25 packs four trials on a "
                               "GPU.")
    tracking_uri: str = _o(store.DEFAULT_TRACKING_URI, "MLflow tracking URI "
                           "(sqlite:///FILE or http://HOST:PORT).")
    sweep_dir: Path = Path("sweeps")  # the CLI's --sweep-dir is a path option of its own
    address: str | None = _o(None, "Ray cluster address (e.g. auto or HOST:6379); default: a "
                             "private local Ray.")
    early_stop: bool = _o(True, "ASHA early stopping on the running objective.",
                          flag="--early-stop/--no-early-stop")
    grace_fraction: float = _o(0.25, "ASHA grace period, as a fraction of the step budget.",
                               flag="--grace")
    reduction_factor: int = _o(3, "ASHA keeps the best 1/N of trials at each rung.")
    max_failures: int = _o(2, "Retries of a failed trial (from its last checkpoint).")
    reuse_actors: bool = _o(True, "Reuse trial worker processes: saves ~5-25 s of worker "
                            "start and imports per trial (benchmarks/sweep_overhead.py).",
                            flag="--reuse-actors/--no-reuse-actors")
    sampler_seed: int | None = _o(None, "Seed of the Optuna sampler.")
    command: str = ""  # the command line that started the sweep, for the parent run
    # "tpe" (Optuna's TPE, the default) or "random" (Optuna's RandomSampler). Both go through
    # the same OptunaSearch, so a comparison of the two differs only in the sampler.
    search: str = _o("tpe", "Optuna sampler: tpe, or random search (same machinery, only the "
                     "sampler differs; benchmarks/search_efficiency.py compares them).",
                     metavar="[tpe|random]")
    # TPE's random start-up: Optuna's default of 10 fills a 10-trial sweep with random search
    # (so TPE and random came out equal, docs/results.md); 5 lets the model steer sooner.
    tpe_startup: int = _o(5, "TPE: random start-up trials before its model steers "
                          "(Optuna's default is 10).")
    # Multivariate TPE models the parameters jointly; `group` splits a conditional space
    # (gp_lambda only for wgan-gp) into the subspaces that occur together.
    tpe_multivariate: bool = _o(False, "TPE: model the parameters jointly (Optuna's "
                                "multivariate TPE, grouped by conditional subspace).",
                                flag="--tpe-multivariate/--tpe-independent")
    # What a seed must reach to count as a success, and the objective's tie-breaker
    # (sweeper/analyse/objective.py). Both are saved with the sweep and restored by --resume.
    rule: SuccessRule = DEFAULT_RULE
    objective: str = DEFAULT_OBJECTIVE
    # A trial's seeds train as one batched population (trainers/population.py); False trains
    # them one after another, for devices where batching does not pay.
    batch_seeds: bool = _o(True, "Train a trial's seeds as one batched population, or one "
                           "after another (where batching does not pay: "
                           "benchmarks/population.py).", flag="--batch-seeds/--separate-seeds")
    # Settings per Tune trial (sweeper/tune/trial.py): "auto" sizes it to the device
    # (`fuse_size`); None takes the space file's `fuse:`, else 1.
    fuse: str | None = _o(None, "Settings trained together per trial, as one population with "
                          "successive halving inside it (ASHA's rungs): a number, or auto "
                          "(sized to the device); default: the space's fuse:, else 1.",
                          metavar="[N|auto]")
    # Ray Tune's own boxed per-trial panels instead of sweeper/tune/progress.py's lines (this
    # driver session only: not saved).
    verbose: bool = _o(False, "Ray Tune's own per-trial panels instead of one line per ended "
                       "trial and a short table of the running ones.", flag="--verbose")


# The fields `sweeper run` makes options of, in this order.
CLI_FIELDS = tuple(f for f in dataclasses.fields(SweepOptions) if "doc" in f.metadata)


# Options that define a sweep; saved at its start and restored by --resume, so a resumed
# sweep trains exactly what the original did (same space text, seeds, budget, resources).
SAVED_FIELDS = ("name", "num_samples", "budget_steps", "max_concurrent", "seeds",
                "cpus_per_trial", "gpus_per_trial", "tracking_uri", "early_stop", "grace_fraction",
                "reduction_factor", "max_failures", "reuse_actors", "sampler_seed", "search",
                "objective", "batch_seeds", "tpe_startup", "tpe_multivariate", "fuse")
# Saved options added after sweeps were already saved without them: the value those older
# sweeps actually ran with, so they still resume as they started (before the quality rule,
# seeds succeeded on coverage alone and FID broke ties).
_SAVED_DEFAULTS = {"search": "tpe", "objective": "fid", "rule": LEGACY_RULE.to_dict(),
                   "batch_seeds": True, "tpe_startup": 10, "tpe_multivariate": False,
                   "budget_steps": 0, "fuse": "1"}
OPTIONS_FILE = "sweep_options.json"


def save_options(opts: SweepOptions, path: Path) -> None:
    data = {k: getattr(opts, k) for k in SAVED_FIELDS}
    data["rule"] = opts.rule.to_dict()
    data["space"] = {"name": opts.space.name, "source": opts.space.source,
                     "text": opts.space.text, "fixed": opts.space.fixed,
                     "base": opts.space.base}
    data[MODEL_FILES] = model_digests(opts.space)
    (path / OPTIONS_FILE).write_text(json.dumps(data, indent=1), encoding="utf-8")


# Saved with a sweep: the SHA-1 of each user model file it trains, checked by --resume.
MODEL_FILES = "model_sha1"


def model_digests(space: SearchSpace) -> dict[str, str]:
    return {c.model: source_digest(c.model) for c in space.model_configs()
            if is_user_spec(c.model)}


def check_model_files(space: SearchSpace, path: Path) -> None:
    """A resume must train the model files the sweep started with: an edited or swapped file
    would mix two networks in one sweep (and run code nobody checked); one line, before
    anything is imported."""
    try:
        saved = json.loads((path / OPTIONS_FILE).read_text(encoding="utf-8")).get(MODEL_FILES, {})
    except (OSError, ValueError):
        return  # restore_options has already named a missing or damaged file
    for spec, now in model_digests(space).items():
        if spec in saved and saved[spec] != now:
            state = "cannot be read" if not now else f"has SHA-1 {now[:12]}"
            raise UserError(f"model file of {spec[:200]} {state}, but the sweep started with "
                            f"SHA-1 {saved[spec][:12]}; put that version back, or start a new "
                            "sweep under another --experiment")


def restore_options(opts: SweepOptions, path: Path) -> SweepOptions:
    """The sweep's saved options; only --address (where it runs) comes from this command."""
    from sweeper.tune.spaces import parse_space

    try:
        data = json.loads((path / OPTIONS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{path / OPTIONS_FILE} is missing or damaged; this sweep cannot be "
                        "resumed safely") from None
    data = {**_SAVED_DEFAULTS, **data}
    missing = [k for k in (*SAVED_FIELDS, "space", "rule") if k not in data]
    if missing:
        raise UserError(f"{path / OPTIONS_FILE} lacks {', '.join(missing)}; this sweep cannot "
                        "be resumed safely")
    sp = data.pop("space")
    space = parse_space(yaml.safe_load(sp["text"]), name=sp["name"], source=sp["source"],
                        text=sp["text"], base=Path(sp["base"]) if sp.get("base") else None)
    # --smoke-test edits fixed values after parsing; the saved ones are what actually ran.
    space = dataclasses.replace(space, fixed=sp["fixed"])
    rule = rule_from_mapping(data["rule"], where=str(path / OPTIONS_FILE))
    return dataclasses.replace(opts, space=space, rule=rule,
                               **{k: data[k] for k in SAVED_FIELDS})


# What `sweep_path` appends to a name it had to change: "-" and 8 hex digits of its SHA-1.
_NAME_HASH = re.compile(r"-[0-9a-f]{8}$")


def sweep_path(sweep_dir: Path, name: str) -> Path:
    """The sweep's folder: always one component strictly inside `sweep_dir`.

    Names may hold quotes, spaces, slashes and unicode: characters outside [A-Za-z0-9_.-]
    become "_", and a name that was changed, cut to 60 characters, is all dots (".", ".."
    would be the sweep folder itself or its parent) or already ends like a hash gets 8 hex
    digits of its SHA-1, so two names never share a folder."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
    if safe != name or not safe.strip(".") or _NAME_HASH.search(safe):
        safe += "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return sweep_dir / safe


def latest_sweep(sweep_dir: Path) -> str | None:
    """Name of the most recently started sweep in sweep_dir (for `--resume` alone)."""
    found = sorted((p.stat().st_mtime, p) for p in sweep_dir.glob(f"*/{OPTIONS_FILE}"))
    if not found:
        return None
    try:
        return json.loads(found[-1][1].read_text(encoding="utf-8"))["name"]
    except (OSError, ValueError, KeyError):
        return None


# What a start leaves before Tune's first snapshot; anything more means trials ran.
_START_FILES = {OPTIONS_FILE, "optuna.db", "driver.lock", ".write-test", "tuner.pkl",
                ".validate_storage_marker", SESSION_FILE}


def _never_started(path: Path) -> bool:
    """True if the folder holds only what a start writes before Tune's first snapshot (a
    start stopped at once): nothing trained, so the sweep may simply start again."""
    return (path / OPTIONS_FILE).exists() and all(
        p.name in _START_FILES for p in path.iterdir())


def check_study(path: Path, name: str) -> None:
    """The Optuna study a resume continues must be readable and hold this sweep; checked
    read-only, so a damaged file is reported before anything touches it."""
    import sqlite3

    db = path / "optuna.db"
    fix = "restore it from a backup, or start the sweep again under another --experiment"
    if not db.is_file() or db.stat().st_size == 0:
        raise UserError(f"the Optuna study {db} is missing or empty; {fix}")
    if "studies" not in store.check_sqlite_file(db, "the Optuna study", fix):
        raise UserError(f"{db} is not an Optuna study (no studies table); {fix}")
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        found = con.execute("SELECT 1 FROM studies WHERE study_name = ?", (name,)).fetchone()
    finally:
        con.close()
    if found is None:
        raise UserError(f"{db} holds no study named {store.short(name)!r}; {fix}")


# Ray's gRPC servers (GCS, raylet, workers, agents) listen on every interface unless the
# node's address is loopback, and on Linux `ray.init` swaps a loopback node address for the
# machine's network address while Ray's "cluster mode" is on. A private local Ray needs no
# other machine, so it starts with cluster mode off: then every socket of it listens on
# 127.0.0.1 (tests/sweeper/tune/test_loopback.py lists them during a real sweep).
_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def _local_ray_on_loopback() -> Iterator[None]:
    """Cluster mode off while `ray.init` starts the private Ray (its processes inherit the
    environment), then as it was: a `ray start` cluster this process (or a child) starts or
    joins later needs it on."""
    from ray._private import ray_constants

    old_env, old_mode = os.environ.get(_LOCAL_ONLY_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: this process imported it already
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_mode
        if old_env is None:
            os.environ.pop(_LOCAL_ONLY_ENV, None)
        else:
            os.environ[_LOCAL_ONLY_ENV] = old_env


@contextmanager
def _stderr_held(out: dict[str, str]) -> Iterator[None]:
    """Send file descriptor 2 (Python's and Ray's C++ logging alike) to a temporary file;
    its text is in out["text"] afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            out["text"] = f.read().decode("utf-8", errors="replace")


def _auth_refused(text: str) -> bool:
    return any(w in text for w in ("InvalidAuthToken", "Unauthenticated",
                                   "AuthenticationError"))


def _token_hint(address: str | None) -> str:
    """One line for a cluster that refused this driver's token: which token, and where."""
    have = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or (
        Path.home() / ".ray" / "auth_token").is_file()
    why = "has a token the cluster refuses" if have else "has no Ray auth token"
    return (f"the Ray cluster at {store.short(str(address))} requires token auth and this "
            f"driver {why}; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the cluster's token "
            "(the file ~/.ray/auth_token on its head node; or RAY_AUTH_TOKEN_PATH=that file)")


def connect_ray(address: str | None, opts: SweepOptions) -> int:
    """ray.init with bounded, one-line failures, then check the cluster can fit a trial;
    returns how many trials it can run at once. A private local Ray (no --address) listens
    on 127.0.0.1 only."""
    import ray

    if address is not None and not address.strip():
        raise UserError("--address is empty; give HOST:PORT or leave it out for a private "
                        "local Ray")
    if address and address not in ("auto", "local"):
        # Ray's own connect (and Ray Client's, for ray://) retries for a long time.
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if address.startswith("ray://") and not host:
            host, port = port, "10001"  # Ray Client's default port
        try:
            socket.create_connection((host or "127.0.0.1", int(port)),
                                     timeout=CONNECT_TIMEOUT_S).close()
        except (OSError, ValueError):
            raise UserError(f"cannot reach a Ray cluster at {store.short(address)}; start "
                            "one with `ray start --head` (see docs/cluster.md) or fix "
                            "--address") from None
    local = address in (None, "local")
    log = {"text": ""}
    try:
        # Ray's C++ client logs each refused connect attempt to stderr (about 20 lines for a
        # wrong token) before raising: held back here, named below in one line, and replayed
        # only when the connect succeeds.
        with (_local_ray_on_loopback() if local else _stderr_held(log)):
            # "local", not None: None joins whatever `ray start` cluster this machine last
            # recorded in /tmp/ray/ray_current_cluster (a live one would run the private
            # sweep on someone's cluster; a stale one hangs the driver on a dead address).
            ray.init(address="local" if local else address, include_dashboard=False,
                     logging_level="WARNING", log_to_driver=True, configure_logging=True)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, ValueError, its own
        if _auth_refused(f"{e} {log['text']}"):
            raise UserError(_token_hint(address)) from None
        if isinstance(e, ConnectionError):
            raise UserError(f"cannot connect to Ray at {address}: {one_line(e)}; start the "
                            "cluster or fix --address") from None
        if isinstance(e, ValueError):  # a malformed address
            raise UserError(f"--address {store.short(str(address))!r} is not a Ray address "
                            f"({one_line(e)}); use HOST:PORT, ray://HOST:PORT or auto") from None
        raise
    if log["text"]:
        sys.stderr.write(log["text"])
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if opts.cpus_per_trial > cpus:
        ray.shutdown()
        raise UserError(f"--cpus-per-trial {opts.cpus_per_trial:g} is more than the cluster "
                        f"has ({cpus:g} CPUs); lower it or add nodes")
    if opts.gpus_per_trial > gpus:
        ray.shutdown()
        raise UserError(f"--gpus-per-trial {opts.gpus_per_trial:g} but the cluster has "
                        f"{gpus:g} GPUs; pass --gpus-per-trial 0 or add GPU nodes")
    fit = int(cpus / opts.cpus_per_trial + 1e-9)
    if opts.gpus_per_trial:
        fit = min(fit, int(gpus / opts.gpus_per_trial + 1e-9))
    return max(1, fit)


def concurrency(opts: SweepOptions, fit: int, *, say: bool = True) -> int:
    """Trials at once: --max-concurrent, but never more than the cluster can run (`fit`);
    `say` notes a clamp once.

    Tune asks the searcher for a setting for every slot the limit allows before it starts
    any, so a limit beyond what can run livelocks the driver (a million slots: no trial in
    minutes) or lets TPE propose settings it has no results for; the default (0) is the
    cluster's own size, for the same reason."""
    if say and opts.max_concurrent > fit:
        print(f"--max-concurrent {opts.max_concurrent} is more than the cluster can run at "
              f"once ({fit} trials of {opts.cpus_per_trial:g} CPU"
              + (f" and {opts.gpus_per_trial:g} GPU" if opts.gpus_per_trial else "")
              + f"); running {fit} at a time", file=sys.stderr)
    return min(opts.max_concurrent or fit, fit)


# `--fuse auto` on a CPU: enough settings per trial that the population step amortises
# (trainers/members.py: one population pays at every size on a CPU), few enough that the
# sweep still runs in about this many waves of trials, so TPE learns between them.
AUTO_WAVES = 3
AUTO_CPU_MAX = 16
# `--fuse auto` on a GPU: settings x seeds members may take up to this share of the trial's
# GPU memory (trainers/memory.py's estimate; the rest is headroom for the allocator).
AUTO_GPU_SHARE = 0.5
AUTO_GPU_MAX = 256


def fuse_size(opts: SweepOptions, at_once: int) -> int:
    """Settings per trial for this sweep: --fuse, or the space's `fuse:`, resolved for the
    device where it says auto (see AUTO_*), never more than --num-samples."""
    want = parse_fuse(opts.fuse if opts.fuse is not None else opts.space.fuse)
    if want != "auto":
        return max(1, min(int(want), opts.num_samples))
    if opts.gpus_per_trial:
        from sweeper.tune.sizes import members_that_fit

        fit = members_that_fit(opts, AUTO_GPU_SHARE) // max(1, opts.seeds)
        return max(1, min(opts.num_samples, AUTO_GPU_MAX, fit))
    waves = max(1, at_once) * AUTO_WAVES
    return max(1, min(AUTO_CPU_MAX, -(-opts.num_samples // waves)))


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def open_parent_run(opts: SweepOptions) -> tuple[str, str, str]:
    """(experiment_id, parent_run_id, sweep_key): the sweep's parent run, found or created."""
    client = store.client(opts.tracking_uri)
    exp_id = store.experiment_id(client, opts.name)
    sweep_key = store.safe_key("sweep", hashlib.sha1(opts.name.encode()).hexdigest()[:16])
    run_id, existed = store.find_or_create_run(
        client, exp_id, sweep_key, name=f"sweep-{opts.space.name}",
        tags={tags.TAG_KIND: "sweep", tags.TAG_SWEEP: opts.name,
              tags.TAG_SPACE: opts.space.name, tags.TAG_COMMAND: opts.command,
              tags.TAG_GIT_COMMIT: _git_commit()})
    if not existed:
        logger = store.RunLogger(client, run_id)
        logger.log_params({"space": opts.space.name, "num_samples": opts.num_samples,
                           "budget_steps": opts.budget_steps,
                           "seeds": opts.seeds, "max_concurrent": opts.max_concurrent,
                           "cpus_per_trial": opts.cpus_per_trial,
                           "gpus_per_trial": opts.gpus_per_trial,
                           "early_stop": opts.early_stop, "search": opts.search,
                           "sampler_seed": opts.sampler_seed, "objective": opts.objective,
                           "batch_seeds": opts.batch_seeds, "fuse": opts.fuse,
                           **objective.rule_params(opts.rule), **{
                               f"fixed.{k}": v for k, v in opts.space.fixed.items()}})
        logger.log_text(opts.space.text, "space.yaml")
    else:  # a resume (or a restart of a start that never got going): it runs again
        client.set_tag(run_id, tags.TAG_RESUMED_WITH, opts.command)
        client.set_tag(run_id, tags.TAG_STATUS, "running")
        client.update_run(run_id, status="RUNNING")
    # The view the printed link opens (trials ranked, parallel coordinates of these params).
    write_view(client, exp_id, opts.space.sampled_names())
    return exp_id, run_id, sweep_key


def _budget(opts: SweepOptions) -> int:
    """The steps a trial trains to: the space's, else the config's own default."""
    from trainers.config import TrialConfig

    return int(opts.space.fixed.get("steps", TrialConfig.steps))


def _rungs(opts: SweepOptions) -> tuple[int, ...]:
    """Where a fused trial halves its settings: ASHA's rungs for this sweep (none without
    early stopping)."""
    from sweeper.tune.halving import rungs

    if not opts.early_stop:
        return ()
    return rungs(_budget(opts), opts.grace_fraction, opts.reduction_factor)


def _scheduler(opts: SweepOptions):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if not opts.early_stop:
        return FIFOScheduler()
    steps = _budget(opts)
    return ASHAScheduler(time_attr=names.STEP, metric=names.RUNNING_OBJECTIVE, mode="min",
                         max_t=steps, grace_period=max(1, int(steps * opts.grace_fraction)),
                         reduction_factor=opts.reduction_factor)


class SweepInterrupted(Exception):
    """The sweep stopped (Ctrl-C, SIGTERM, SIGHUP) before all its trials ended. Every store
    is left resumable: Tune's snapshot, the Optuna study (cut-off trials stay RUNNING) and
    MLflow (their runs are tagged `interrupted`)."""

    def __init__(self, rows: list[dict[str, Any]], signal_name: str | None,
                 num_samples: int) -> None:
        self.rows, self.signal_name, self.num_samples = rows, signal_name, num_samples
        self.finished = sum(r["status"] == "finished" for r in rows)
        super().__init__(f"interrupted by {signal_name or 'a stop signal'}")


def run_sweep(opts: SweepOptions, *, resume: bool) -> list[dict[str, Any]]:
    """Run (or resume) a sweep; returns the ranked rows of the results table. One driver
    at a time: a second on the same sweep is refused (sweeper/tune/driver_lock.py). A stop
    signal raises SweepInterrupted once the sweep's state is saved (sweeper/tune/interrupt.py)."""
    from sweeper.tune.driver_lock import driver_lock

    check_dir_writable(opts.sweep_dir, "--sweep-dir")
    with driver_lock(sweep_path(opts.sweep_dir, opts.name)), StopSignals() as signals:
        return _run_sweep(opts, resume=resume, signals=signals)


def _run_sweep(opts: SweepOptions, *, resume: bool,
               signals: StopSignals) -> list[dict[str, Any]]:
    from sweeper.tune.trial import TrialContext

    # The scheduler's metric (running_objective) is in every result but the searcher's
    # (objective) only in final ones, by design (see trial.py); Tune's strict check would
    # reject that.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # One checkpoint per evaluation is what lets a lost trial resume mid-run; Tune's warning
    # about frequent experiment snapshots is expected here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    opts, path, rebuild, never_started = _open_sweep(opts, resume)
    # What cannot fit in memory is refused before the probe builds one member for real.
    check_sweep_memory(opts)
    for cfg in opts.space.model_configs():
        check_model(cfg, dataset_shape(cfg))
    # A new SQLite store's schema is built while a private Ray starts: two seconds of each,
    # waited on one after the other, made most of a short sweep's start-up. (Joining a
    # cluster is quick, and a wrong address is refused with no store made.)
    local = opts.address in (None, "local")
    with store.schema_meanwhile(opts.tracking_uri if local else None):
        opts, at_once, fuse = _start_ray(opts, resume=resume, local=local)
    signals.install()  # ray.init put its own SIGTERM handler in
    if never_started:
        # A start stopped before Tune's first snapshot: nothing trained that a resume could
        # continue, so it starts again (MLflow runs are found again by key).
        print(f"sweep {opts.name!r} never got going; starting it again", file=sys.stderr)
        (path / "optuna.db").unlink(missing_ok=True)
    if not resume:
        path.mkdir(parents=True, exist_ok=True)
        save_options(opts, path)
    store.quiet_store_errors(path / "unsent", fresh=True)
    exp_id, parent_id, sweep_key = open_parent_run(opts)
    if resume:
        deliver_spool(opts.tracking_uri, path / "unsent")
    ctx = TrialContext(sweep=opts.name, sweep_key=sweep_key, fixed=dict(opts.space.fixed),
                       seeds=tuple(int(opts.space.fixed.get("seed", 0)) + j
                                   for j in range(opts.seeds)),
                       tracking_uri=opts.tracking_uri, experiment_id=exp_id,
                       parent_run_id=parent_id, cpus_per_trial=opts.cpus_per_trial,
                       spool_dir=str(path / "unsent"), rule=opts.rule,
                       objective=opts.objective, batch_seeds=opts.batch_seeds,
                       rungs=_rungs(opts) if fuse > 1 else (),
                       reduction_factor=opts.reduction_factor)
    t0 = time.time()
    to_run = _rebuild_from_records(opts, path, exp_id, rebuild) if rebuild else opts.num_samples
    if resume and not rebuild:
        print(f"resuming sweep {opts.name!r} from {path} with its saved options: space "
              f"{opts.space.name}, {opts.num_samples} settings x {opts.seeds} seeds",
              file=sys.stderr)
    tuner = _tuner(opts, path, ctx, restore=resume and not rebuild, fuse=fuse,
                   at_once=at_once, to_run=to_run)
    grid = [] if not to_run else None  # a rebuilt sweep may have nothing left to run
    open_session(path)  # until Tune stops cleanly (see rebuild.py)
    try:
        with signals.fitting():
            if to_run:
                grid = tuner.fit()
    except KeyboardInterrupt:
        pass  # a signal during Tune's clean stop: quit at once, books closed below
    finally:
        stopped = signals.stopped_by_tune
        signals.install()
        with signals.deferred():
            import ray

            ray.shutdown()
    with signals.deferred():
        return _close_books(opts, path, grid, exp_id, parent_id, t0,
                            signals.received or ("SIGINT" if stopped else None))


def _start_ray(opts: SweepOptions, *, resume: bool, local: bool
               ) -> tuple[SweepOptions, int, int]:
    """Start or join Ray and size the sweep to it: (the options, with the fuse size it
    saves; trials at once; settings per trial). Before anything is saved: a sweep the
    cluster cannot run (too many CPUs per trial, a GPU share without GPUs, trials that
    cannot fit in memory) leaves no folder behind, so its name stays free."""
    fit = connect_ray(opts.address, opts)
    # A resume keeps the limit its saved searcher state holds: nothing to say about it.
    at_once = concurrency(opts, fit, say=not resume)
    fuse = fuse_size(opts, at_once)
    opts = dataclasses.replace(opts, fuse=str(fuse))  # saved: a resume fuses the same way
    if fuse > 1 and not resume:
        cuts = _rungs(opts)
        print(f"{fuse} settings per trial, each trial one population of {fuse} x {opts.seeds} "
              "members" + (f", halved at ASHA's rungs (steps {', '.join(map(str, cuts))}; each "
                           "at the first evaluation past it)" if cuts else ""),
              file=sys.stderr)
    try:
        check_sweep_memory(opts, at_once, local=local, fuse=fuse)
    except ConfigError:
        import ray

        ray.shutdown()
        raise
    return opts, at_once, fuse


def _open_sweep(opts: SweepOptions, resume: bool
                ) -> tuple[SweepOptions, Path, str | None, bool]:
    """Check that the sweep can start (or resume) before Ray does: (the options to run with,
    a resume's saved ones; the sweep folder; why Tune's state must be rebuilt from our
    records, or None; whether an earlier start stopped before Tune saved anything)."""
    from ray.tune import Tuner

    if opts.search not in SEARCHES:  # before anything is saved or started
        raise UserError(f"unknown search {opts.search!r}; use one of {', '.join(SEARCHES)}")
    opts = dataclasses.replace(opts, tracking_uri=store.check_tracking_uri(opts.tracking_uri))
    path = sweep_path(opts.sweep_dir, opts.name)
    never_started = _never_started(path)
    rebuild = None  # why Tune's state must be rebuilt from our records (rebuild.py), if so
    if resume and (path / OPTIONS_FILE).exists() and not never_started:
        # Read-only checks first: unpickling the searcher state opens the study.
        check_study(path, opts.name)
        rebuild = tune_state_problem(path)
    can_restore = Tuner.can_restore(str(path))  # true once tuner.pkl is written
    if resume and never_started:
        raise UserError(f"sweep {opts.name!r} was stopped before Tune saved any state, so "
                        "there is nothing to resume; run the same command without --resume")
    if resume and not can_restore and rebuild is None:
        raise UserError(f"no sweep named {opts.name!r} to resume in {opts.sweep_dir}; run "
                        "it without --resume first")
    if not resume and not never_started and (can_restore or (path / OPTIONS_FILE).exists()):
        raise UserError(f"sweep {opts.name!r} already exists in {opts.sweep_dir}; continue "
                        "it with --resume or pick another --experiment")
    if resume:
        opts = restore_options(opts, path)
        # Before Ray starts: a model that cannot build or train is one line, not a failed
        # trial.
        check_model_files(opts.space, path)
    return opts, path, rebuild, never_started


def _rebuild_from_records(opts: SweepOptions, path: Path, exp_id: str, why: str) -> int:
    """Prepare a fresh Tune experiment from the Optuna study and MLflow (rebuild.py), mark
    the MLflow runs of the settings it will not continue, and return how many to run."""
    ended = while_store_works(ended_in_mlflow, opts.tracking_uri, exp_id) or {}
    kept = prepare_rebuild(path, opts.name, ended)
    for ids, status, state in ((kept.cut, "abandoned", "KILLED"),
                               (kept.stopped, "stopped_early", "FINISHED"),
                               (kept.failed, "error", "FAILED")):
        while_store_works(mark_trial_runs, opts.tracking_uri, exp_id,
                          lambda t, ids=ids: t.get(tags.TAG_TRIAL) in ids, status, state)
    to_run = max(0, opts.num_samples - len(kept.finished))
    print(f"the Tune state of sweep {opts.name!r} in {path}: {why}; rebuilt from the "
          f"Optuna study and MLflow (Ray's temp folder is never read): "
          f"{len(kept.finished)} settings ended and are kept, {len(kept.cut)} cut off "
          f"train again from step 0, {to_run} to run", file=sys.stderr)
    return to_run


def _tuner(opts: SweepOptions, path: Path, ctx, *, restore: bool, fuse: int, at_once: int,
           to_run: int):
    """Tune's experiment: restored from its own snapshot (a resume after a clean stop), or
    new (a first run, or a rebuild from our records)."""
    from ray import tune
    from ray.tune import Tuner

    from sweeper.tune.budget import BUDGET_FILE, ComputeBudget
    from sweeper.tune.callbacks import TrialStatusCallback
    from sweeper.tune.progress import ProgressCallback, quiet_trial_errors
    from sweeper.tune.trial import run_trial

    resources = {"cpu": opts.cpus_per_trial}
    if opts.gpus_per_trial:
        resources["gpu"] = opts.gpus_per_trial
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), resources)
    if not opts.verbose:
        quiet_trial_errors()
    if restore:  # the callbacks come back from Tune's snapshot
        return Tuner.restore(str(path), trainable=trainable, resume_unfinished=True,
                             resume_errored=True)
    callbacks = [TrialStatusCallback(opts.tracking_uri)]
    if not opts.verbose:
        callbacks.append(ProgressCallback(
            opts.space.sampled_names(), opts.num_samples, opts.seeds,
            budget=(opts.budget_steps, path / BUDGET_FILE) if opts.budget_steps else None))
    return Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=optuna_search(opts, path, fuse, to_run),
            # A fused trial halves its settings itself (halving.py): no trial-level ASHA.
            scheduler=_scheduler(opts) if fuse == 1 else None,
            num_samples=to_run,
            max_concurrent_trials=at_once,
            reuse_actors=opts.reuse_actors),
        run_config=tune.RunConfig(
            name=path.name, storage_path=str(opts.sweep_dir), callbacks=callbacks,
            stop=ComputeBudget(opts.budget_steps, opts.seeds, path)
            if opts.budget_steps else None,
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            # After every evaluation (a step of the trainable): a lost trial resumes there.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_frequency=1),
            verbose=1 if opts.verbose else 0),
    )


def _close_books(opts: SweepOptions, path: Path, grid, exp_id: str, parent_id: str,
                 t0: float, signal_name: str | None) -> list[dict[str, Any]]:
    """After `fit`: deliver what trials spooled, make MLflow and the Optuna study agree with
    how Tune's trials ended, log the sweep's summary, and raise SweepInterrupted if a stop
    signal cut trials off. `grid` is None when the user forced the stop. Settings a rebuild
    kept (rebuild.py) are known to the study, not to Tune: their rows come from MLflow."""
    from sweeper.tune.budget import ComputeBudget

    if grid is not None:  # Tune returned: its last snapshot is written and can be restored
        close_session(path)
    deliver_spool(opts.tracking_uri, path / "unsent")
    # A sweep that spent its compute budget ran what it was asked to.
    spent = bool(opts.budget_steps) and ComputeBudget(opts.budget_steps, opts.seeds,
                                                      path).stop_all()
    statuses = snapshot_statuses(path)
    unfinished = {t for t, s in statuses.items() if s not in ENDED}
    results = list(grid) if grid is not None else []
    outcomes = trial_outcomes(results)  # setting id -> how it ended
    reported = set(outcomes)
    before = kept_trial_ids(path) - reported - set(statuses)
    earlier = [table_row(*t) for t in (
        while_store_works(recorded_trials, opts.tracking_uri, exp_id, sorted(before),
                           suggested_params(path, opts.name)) or [] if before else [])]
    interrupted = grid is None or bool(unfinished) or (
        signal_name is not None and len(results) + len(earlier) < opts.num_samples)
    if grid is not None:  # a forced stop may have cut the snapshot off: the resume repairs it
        abandoned = while_store_works(mark_abandoned_runs, opts.tracking_uri, exp_id,
                                       reported | set(statuses) | before)
        if abandoned:
            print(f"marked {abandoned} MLflow trial run(s) abandoned: they started after the "
                  "driver's last snapshot before it died, and Tune re-ran their settings as "
                  "new trials", file=sys.stderr)
    if interrupted:
        while_store_works(mark_interrupted_runs, opts.tracking_uri, exp_id, unfinished)
    if grid is not None:
        told, orphans = reconcile_study(path, opts.name, outcomes, unfinished)
        if told and not spent:  # a budget stop leaves its cut-off trials to be told (pruned)
            print(f"told Optuna the outcome of {told} trial(s) whose completion the "
                  "interrupted driver had not recorded", file=sys.stderr)
        if orphans:
            print(f"closed {orphans} Optuna trial(s) left RUNNING by an interrupted driver "
                  "(suggested but never started); they are marked FAIL", file=sys.stderr)
    rows = rank(earlier + result_rows(results, opts.space.sampled_names(), unfinished))
    client = store.client(opts.tracking_uri)
    logger = store.RunLogger(client, parent_id)
    logger.log_text(format_table(rows), "results.md")
    # The run's description in the UI: the ranked table on the sweep's own page.
    logger.set_tags({tags.TAG_NOTE: f"Trials of sweep {opts.name!r}, best first "
                     f"(objective: lower is better):\n\n{format_table(rows, top=20)}"})
    # One point per driver session (the first run, then each --resume), so a resume adds a
    # point instead of a second value at step 0.
    try:
        session = len(history(client, parent_id, "wall_seconds"))
    except Exception:  # noqa: BLE001 - server unreachable: the logger buffers the point anyway
        session = 0
    logger.log_metrics(session, {"wall_seconds": time.time() - t0,
                                 "trials": float(len(rows))})
    if interrupted:
        logger.close("interrupted")
        raise SweepInterrupted(rows, signal_name, opts.num_samples)
    if spent:
        print(f"compute budget of {opts.budget_steps} generator steps spent after "
              f"{len(rows)} of {opts.num_samples} trials", file=sys.stderr)
    logger.close("finished" if spent or len(rows) >= opts.num_samples else "incomplete")
    return rows


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["sweeper", *sys.argv[1:]])
