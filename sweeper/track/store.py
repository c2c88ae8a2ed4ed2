"""MLflow tracking: reachability checks, idempotent runs found by a stable key, batched logging.

Every run we create carries the tag `gan_sweeper.key`, a stable identity (sweep, trial, seed).
Looking a run up by that key before creating one is what keeps a resumed sweep from logging
a trial twice. Metrics are buffered and sent with `log_batch`; if the tracking server is down,
the buffer is kept and retried at the next flush, and a run that could never deliver is left
with its metrics in a local JSONL file (see `RunLogger.close`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sweeper.errors import UserError, one_line, short
from sweeper.track.metric_keys import history, mlflow_key
from sweeper.track.tags import (
    EXPERIMENT_KIND,
    PARENT_TAG,
    TAG_EXPERIMENT_KIND,
    TAG_KEY,
    TAG_LAST_STEP,
    TAG_STATUS,
)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

DEFAULT_UI = "http://127.0.0.1:5000"

# log_batch accepts at most 1000 metrics per call (MLflow's documented REST limit).
_BATCH_LIMIT = 1000
# Keys are built only from these characters so they can sit in a filter string unescaped.
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_./:-]+$")
# During a tracking-server outage, MLflow's default of 7 retries with exponential backoff
# would stall a trial for minutes per call; our own buffer retries instead.
_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
             "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def quiet_http_retries() -> None:
    for k, v in _HTTP_ENV.items():
        os.environ.setdefault(k, v)


def absolute_uri(uri: str) -> str:
    """`uri` with a relative sqlite path made absolute, nothing checked (for printing)."""
    if uri.startswith("sqlite:///") and uri[len("sqlite:///"):] not in ("", ":memory:"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).expanduser().resolve()}"
    return uri


def tracking_args(uri: str) -> list[str]:
    """`--tracking-uri URI` for a printed command, unless `uri` is the default store."""
    return [] if absolute_uri(uri) == absolute_uri(DEFAULT_TRACKING_URI) else [
        "--tracking-uri", uri]


def check_tracking_uri(uri: str, timeout: float = 5.0) -> str:
    """Fail fast, with one line, when the tracking store cannot be used.

    Returns the URI to use everywhere else: a relative sqlite path is made absolute, because
    Ray runs each trial in its own working directory.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
                if r.status == 200:
                    return uri
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = one_line(getattr(e, "reason", e))
            raise UserError(
                f"cannot reach the MLflow tracking server at {uri} ({reason}); start it "
                "(mlflow server --host 127.0.0.1 --port 5000 ...), fix --tracking-uri, or use "
                "--tracking-uri sqlite:///mlflow.db") from None
        raise UserError(f"MLflow tracking server at {uri} is not healthy; check its log")
    if parsed.scheme == "sqlite":
        path = uri[len("sqlite:///"):]
        if path in ("", ":memory:"):
            raise UserError(f"tracking URI {uri!r} is an in-memory database, thrown away when "
                            "the process ends; give a file, e.g. --tracking-uri "
                            "sqlite:///mlflow.db")
        db = Path(path).expanduser().resolve()
        folder = db.parent
        if db.is_dir():
            raise UserError(f"tracking URI {short(uri)!r} names a folder; give the database "
                            f"file, e.g. sqlite:///{short(str(db / 'mlflow.db'))}")
        if not folder.is_dir():
            raise UserError(f"tracking database folder {folder} does not exist; create it or "
                            "pass another --tracking-uri")
        # SQLite writes its journal beside the database, so the folder must be writable too.
        for target in ((db, folder) if db.exists() else (folder,)):
            if not os.access(target, os.W_OK):
                raise UserError(f"tracking database {db} is not writable ({target} is "
                                "read-only); fix its permissions or pass another --tracking-uri")
        check_sqlite_store(db)
        return f"sqlite:///{db}"
    if parsed.scheme in ("", "file"):
        raise UserError(f"tracking URI {uri!r} is a file store, which MLflow 3.17 refuses; use "
                        "--tracking-uri sqlite:///mlflow.db or an http:// server")
    if parsed.scheme.split("+")[0] not in _OTHER_STORES:
        raise UserError(f"tracking URI {short(uri)!r} has an unknown scheme "
                        f"{short(parsed.scheme, 40)!r}; use sqlite:///FILE, http(s)://HOST:PORT "
                        "or a database URI (postgresql://, mysql://, mssql://)")
    return uri


def check_sqlite_store(db: Path) -> None:
    """A damaged or foreign SQLite file gives one line here, read-only, instead of a
    100-line SQLAlchemy traceback at MLflow's first query."""
    if not db.is_file() or db.stat().st_size == 0:
        return  # MLflow creates its tables in a new or empty file
    tables = check_sqlite_file(db, "tracking database",
                               "restore it from a backup or pass another --tracking-uri")
    if tables and "experiments" not in tables:
        raise UserError(f"{db} is an SQLite database but not MLflow's (no experiments table); "
                        "pass another --tracking-uri")


def check_sqlite_file(db: Path, what: str, fix: str) -> set[str]:
    """The table names of SQLite file `db`, after a read-only integrity check; a damaged or
    foreign file raises a one-line UserError naming `what` it is and the `fix`."""
    import sqlite3

    # A write cut off (a crash, a store made read-only mid-write) leaves a hot journal that
    # a read-only connection cannot roll back ("attempt to write a readonly database"); a
    # read-write one rolls it back, which is SQLite's own recovery, so that is tried next.
    journal = db.with_name(db.name + "-journal")
    modes = ("ro", "rw") if journal.exists() and os.access(db, os.W_OK) else ("ro",)
    for mode in modes:
        try:
            con = sqlite3.connect(f"{db.as_uri()}?mode={mode}", uri=True, timeout=30)
            try:
                ok = con.execute("PRAGMA quick_check(1)").fetchone()[0]
                tables = {r[0] for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                con.close()
            break
        except sqlite3.Error as e:
            if mode == modes[-1]:
                raise UserError(f"{what} {db} is damaged or not a database ({one_line(e)}); "
                                f"{fix}") from None
    if ok != "ok":
        raise UserError(f"{what} {db} is damaged ({short(ok)}); {fix}")
    return tables


# Tracking stores MLflow serves besides sqlite and http(s) (passed through unchecked).
_OTHER_STORES = ("postgresql", "mysql", "mssql", "databricks")


_SCHEMA_READY: set[str] = set()  # sqlite URIs whose schema this process has seen in place


class _OneLinePerKind(logging.Filter):
    """MLflow logs every failed SQLite write with a full traceback (`mlflow.store.db.utils`):
    40 of them, 159 KB, for 45 s of a read-only store, while our loggers already keep what
    failed and send it later. So each kind of failure is said once, in one line: once per
    process, or once per sweep when `said_dir` is set (a marker file per kind there, created
    exclusively, so only the first of the sweep's processes says it)."""

    def __init__(self) -> None:
        super().__init__()
        self.said: set[str] = set()
        self.said_dir: Path | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:  # MLflow's notes on creating tables pass
            return True
        cause = record.args[0] if isinstance(record.args, tuple) and record.args else None
        cause = getattr(cause, "orig", None) or cause  # SQLAlchemy wraps sqlite3's error
        kind = short(one_line(cause) if cause is not None else record.getMessage(), 160)
        if kind in self.said or not self._first_in_sweep(kind):
            return False
        self.said.add(kind)
        record.msg = (f"the tracking store failed ({kind}); runs keep what they could not "
                      "send and deliver it once the store works again (at the latest on "
                      "`sweeper run --resume`); said once per kind of failure")
        record.args, record.exc_info, record.exc_text = (), None, None
        return True

    def _first_in_sweep(self, kind: str) -> bool:
        if self.said_dir is None:
            return True
        import hashlib

        marker = self.said_dir / f".said-{hashlib.sha1(kind.encode()).hexdigest()[:12]}"
        try:
            self.said_dir.mkdir(parents=True, exist_ok=True)
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False
        except OSError:  # the folder itself is unwritable: say it in this process
            return True


_QUIET = _OneLinePerKind()


def quiet_store_errors(said_dir: Path | str | None = None, *, fresh: bool = False) -> None:
    """One line per kind of tracking-store failure instead of MLflow's tracebacks; with
    `said_dir`, one per sweep (see _OneLinePerKind); `fresh` (a driver session starting)
    forgets what earlier sessions said. Idempotent."""
    log = logging.getLogger("mlflow.store.db.utils")
    if _QUIET not in log.filters:
        log.addFilter(_QUIET)
    if said_dir is not None:
        _QUIET.said_dir = Path(said_dir)
        if fresh:
            for marker in _QUIET.said_dir.glob(".said-*"):
                marker.unlink(missing_ok=True)


def client(uri: str):
    """An MlflowClient for `uri` (imported late: MLflow takes ~1 s to import).

    The first client for a `sqlite:///` URI in a process is made under an exclusive flock on
    the database's folder. MLflow builds a new SQLite file's tables with Alembic on first
    use, and two processes doing that at once (a sweep starting while `sweeper stable`, a
    test or a second sweep opens the same new file) fail with "table ... already exists" or
    a half-applied migration. Once the schema is in place, opening the store only reads its
    version, so later clients skip the lock.
    """
    from mlflow.tracking import MlflowClient

    quiet_store_errors()
    if not uri.startswith("sqlite:///") or uri in _SCHEMA_READY:
        return MlflowClient(tracking_uri=uri)
    with _folder_lock(Path(uri[len("sqlite:///"):]).expanduser().parent):
        c = MlflowClient(tracking_uri=uri)
        try:
            c.search_experiments(max_results=1)  # creates or migrates the schema
            _SCHEMA_READY.add(uri)
        except Exception:  # noqa: BLE001 - a broken store surfaces at the caller's first call
            pass
    return c


@contextmanager
def schema_meanwhile(uri: str | None):
    """Build a new SQLite store's schema (what `client` does first: ~2 s of Alembic
    migrations) in a thread while the block runs, e.g. while Ray starts. Joined when the
    block ends, however it ends, so MLflow's lines come before an error the block raises.
    Other stores (or None) have nothing to build. A failure is left for the first real use
    to name."""
    t = None
    if uri is not None and uri.startswith("sqlite:///") and uri not in _SCHEMA_READY:
        import mlflow.tracking  # noqa: F401 - imported here, not by two threads at once

        t = threading.Thread(target=client, args=(uri,), name="mlflow-schema")
        t.start()
    try:
        yield
    finally:
        if t is not None:
            t.join()


@contextmanager
def _folder_lock(folder: Path):
    """Exclusive flock on a folder (no lock file left behind); a no-op if it is missing."""
    import fcntl

    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # no such folder: MLflow raises its own error at first real use
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def experiment_id(mlflow_client, name: str, *, create: bool = True) -> str | None:
    """Id of the experiment called `name` (created if missing). Never builds a filter string
    from the name, so quotes or unicode in it are harmless."""
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise UserError(f"MLflow experiment {name!r} is deleted; restore it in the UI or "
                            "pick another --experiment")
        if create and exp.tags.get(TAG_EXPERIMENT_KIND) != EXPERIMENT_KIND:
            mlflow_client.set_experiment_tag(exp.experiment_id, TAG_EXPERIMENT_KIND,
                                             EXPERIMENT_KIND)
        return exp.experiment_id
    if not create:
        return None
    return mlflow_client.create_experiment(name, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND})


def runs_view_url(uri: str, exp_id: str, ui: str = DEFAULT_UI, *, view: bool = True) -> str:
    """MLflow's model-training runs page of the experiment; with `view`, in the sweep's
    comparison view (`mlflow_view`: trials ranked, parallel coordinates). A tracking server
    serves it itself; a SQLite store is served by `sweeper ui` at `ui`."""
    from sweeper.track.mlflow_view import VIEW_KEY

    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else ui
    shared = f"viewStateShareKey={VIEW_KEY}&compareRunsMode=CHART&" if view else ""
    return f"{base}/#/experiments/{exp_id}/runs?{shared}workflowType=machine_learning"


def where_to_look(uri: str, exp_id: str) -> str:
    """One line: the runs-view link, and for a SQLite store how to serve it."""
    from sweeper.track.mlflow_view import ensure_view

    try:  # a sweep logged before views existed gets one now
        view = ensure_view(client(uri), exp_id)
    except Exception:  # noqa: BLE001 - a read-only or unreachable store: `sweeper ui` retries
        view = not uri.startswith(("http://", "https://"))
    link = runs_view_url(uri, exp_id, view=view)
    if uri.startswith(("http://", "https://")):
        return f"MLflow runs: {link}"
    from sweeper.commands import sweeper_cmd

    return f"MLflow runs: `{sweeper_cmd('ui', '--tracking-uri', uri)}`, then open {link}"


def find_run(mlflow_client, exp_id: str, key: str):
    """The run carrying tag gan_sweeper.key == key, or None."""
    if not _SAFE_KEY.match(key):
        raise ValueError(f"unsafe run key {key!r}")
    runs = mlflow_client.search_runs([exp_id], filter_string=f"tags.`{TAG_KEY}` = '{key}'",
                                     max_results=2)
    return runs[0] if runs else None


def find_or_create_run(mlflow_client, exp_id: str, key: str, *, name: str,
                       tags: Mapping[str, str] | None = None,
                       parent_run_id: str | None = None) -> tuple[str, bool]:
    """(run_id, existed): the run with this key, created on first use only."""
    run = find_run(mlflow_client, exp_id, key)
    if run is not None:
        return run.info.run_id, True
    all_tags = {TAG_KEY: key, **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = mlflow_client.create_run(exp_id, run_name=name, tags=all_tags)
    return run.info.run_id, False


def safe_key(*parts: object) -> str:
    """Join parts into a key made only of filter-safe characters."""
    return "/".join(re.sub(r"[^A-Za-z0-9_.:-]", "_", str(p)) for p in parts)


@dataclass(frozen=True)
class RunSpec:
    """How to find (by key) or create a run; all a spooled record needs to be delivered."""

    experiment_id: str
    key: str
    name: str
    tags: dict[str, str]  # set when the run is created
    parent_run_id: str | None = None
    parent_key: str | None = None  # parent found by its key (it may not exist yet either)

    def open(self, mlflow_client) -> tuple[str, bool]:
        parent = self.parent_run_id
        if parent is None and self.parent_key is not None:
            run = find_run(mlflow_client, self.experiment_id, self.parent_key)
            if run is None:
                raise LookupError(f"parent run {self.parent_key} is not in MLflow yet")
            parent = run.info.run_id
        return find_or_create_run(mlflow_client, self.experiment_id, self.key, name=self.name,
                                  tags=self.tags, parent_run_id=parent)


# MLflow's run state for a final status tag; an interrupted run is KILLED until a resume
# reopens it.
_END_STATES = {"error": "FAILED", "interrupted": "KILLED"}


class RunLogger:
    """Buffered, outage-tolerant logging into one MLflow run.

    Given a `spec`, the run is found by its key or created at the first flush that reaches
    the server. Until then, and during any later outage, metrics stay in the buffer and are
    retried at each flush; a run that closes while MLflow is down is written to the `spool`
    file, and `deliver_spooled` sends it later. `skip_through` makes re-logging idempotent:
    a trial that restarts (after a crash or a resume) re-computes steps it already logged;
    those are dropped instead of duplicated.
    """

    def __init__(self, mlflow_client, run_id: str | None = None, *,
                 spec: RunSpec | None = None, params: Mapping[str, Any] | None = None,
                 tags: Mapping[str, Any] | None = None, skip_through: int = -1,
                 spool: Path | None = None) -> None:
        self.client = mlflow_client
        self.run_id = run_id
        self.spec = spec
        self._params = {k: str(v) for k, v in (params or {}).items()}
        self._tags = {k: str(v) for k, v in (tags or {}).items()}
        # Tags not yet known to be in MLflow. A tag write can fail like any other (a locked
        # SQLite file, a server outage); dropped, it would leave a restored trial tagged with
        # the node it ran on before (reliability round 3, row 11), so it waits like a metric.
        self._unsent_tags = dict(self._tags)
        self.skip_through = skip_through
        self.spool = spool
        self._metrics: list[Any] = []
        self._last_step = skip_through

    def ensure_run(self) -> bool:
        """Open the run if it is not open yet; False while MLflow is unreachable."""
        if self.run_id is not None:
            return True
        try:
            run_id, existed = self.spec.open(self.client)
            if existed:
                run = self.client.get_run(run_id)
                self.skip_through = max(self.skip_through, self.last_logged_step(run),
                                        self._last_step_in_store(run_id))
                if run.info.status != "RUNNING":  # resumed or retried: it runs again
                    self.client.update_run(run_id, status="RUNNING")
        except Exception:  # noqa: BLE001 - any tracking failure must not kill training
            return False
        self.run_id = run_id
        if not existed and self._params:
            self.log_params(self._params)
        self._send_tags()
        return True

    def _last_step_in_store(self, run_id: str) -> int:
        """The last step whose `step` metric is in MLflow. The last-step tag is written after
        the metrics: a process killed between the two (a lost node, reliability round 3 row
        11) leaves the tag one evaluation behind, and a restart would log that step twice.
        A step's metrics go out in one write with its `step` metric (`_chunks`), so this
        is the step they reached."""
        from trainers import names

        return max((int(m.step) for m in history(self.client, run_id, names.STEP)),
                   default=-1)

    @staticmethod
    def last_logged_step(run) -> int:
        """The last step whose metrics reached this run (tag written at every flush)."""
        return int(run.data.tags.get(TAG_LAST_STEP, -1)) if run is not None else -1

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        self._call(self.client.log_batch, self.run_id, params=items)

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        """Buffer one step's metrics (non-finite values are dropped, never logged as NaN)."""
        from mlflow.entities import Metric

        if step <= self.skip_through:
            return
        ts = int(time.time() * 1000)
        for k, v in values.items():
            v = float(v)
            if v == v and abs(v) != float("inf"):
                self._metrics.append(Metric(mlflow_key(k), v, ts, int(step)))
        self._last_step = max(self._last_step, int(step))

    def flush(self) -> bool:
        """Send buffered metrics, then unsent tags; on failure keep them for the next flush.
        True if all sent."""
        if not self.ensure_run():
            return False
        self._metrics = [m for m in self._metrics if m.step > self.skip_through]
        for chunk in _chunks(self._metrics):
            if not self._call(self.client.log_batch, self.run_id, metrics=chunk):
                return False
            del self._metrics[: len(chunk)]
        # The last step logged goes with any unsent tags, in one write; a resumed logger
        # skips the steps it names.
        self._unsent_tags[TAG_LAST_STEP] = str(self._last_step)
        return self._send_tags()

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tag the run now if it is open and reachable; otherwise at the next flush."""
        tags = {k: str(v) for k, v in tags.items()}
        self._tags.update(tags)
        self._unsent_tags.update(tags)
        if self.run_id is not None:
            self._send_tags()

    def _send_tags(self) -> bool:
        from mlflow.entities import RunTag

        sending = dict(self._unsent_tags)
        if not sending:
            return True
        if not self._call(self.client.log_batch, self.run_id,
                          tags=[RunTag(k, v) for k, v in sending.items()]):
            return False
        for k, v in sending.items():  # a value set again meanwhile stays unsent
            if self._unsent_tags.get(k) == v:
                del self._unsent_tags[k]
        return True

    def log_figure(self, fig, artifact_file: str) -> None:
        """Upload a figure now if the run is reachable; a plot is not worth buffering."""
        import matplotlib.pyplot as plt

        try:
            if self.ensure_run():
                self._call(self.client.log_figure, self.run_id, fig, artifact_file)
        finally:
            plt.close(fig)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.ensure_run():
            self._call(self.client.log_text, self.run_id, text, artifact_file)

    def close(self, status: str) -> bool:
        """Flush, tag the final status and end the run. If MLflow stays unreachable, the
        metrics go to the local spool file and the run is left marked incomplete."""
        # The status goes with the last flush, after the metrics: a run tagged finished has
        # all its points.
        self._tags[TAG_STATUS] = self._unsent_tags[TAG_STATUS] = status
        delivered = self.flush()
        if delivered:
            state = _END_STATES.get(status, "FINISHED")
            self._call(self.client.set_terminated, self.run_id, state)
            return True
        self._spool_unsent(status)
        return False

    def _spool_unsent(self, status: str) -> None:
        """Keep what MLflow did not get, as one JSON line that `deliver_spooled` can send."""
        if self.spool is None or self.spec is None:
            return
        record = {"spec": dataclasses.asdict(self.spec), "params": self._params,
                  "tags": self._tags, "status": status,
                  "metrics": [[m.key, m.value, m.timestamp, m.step] for m in self._metrics]}
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        # Best effort: if the server is back for this one call, flag the run as incomplete.
        if self.run_id is not None:
            self._call(self.client.set_tag, self.run_id, TAG_STATUS, "incomplete")

    def _call(self, fn, *args, **kwargs) -> bool:
        try:
            fn(*args, **kwargs)
            return True
        except Exception:  # noqa: BLE001 - any tracking failure must not kill training
            return False


def _chunks(metrics: list) -> list[list]:
    """Buffered metrics (in step order) as log_batch calls of at most _BATCH_LIMIT, never
    splitting a step that fits in one: a call is one transaction, so such a step is in
    MLflow whole or not at all (a restarted run finds where it got to from its `step`
    metric)."""
    steps: list[list] = []
    for m in metrics:
        if steps and steps[-1][-1].step == m.step:
            steps[-1].append(m)
        else:
            steps.append([m])
    chunks: list[list] = []
    for group in steps:
        if chunks and len(chunks[-1]) + len(group) <= _BATCH_LIMIT:
            chunks[-1].extend(group)
        else:  # a step of more than _BATCH_LIMIT metrics (never ours) is cut where it must be
            chunks += [group[i:i + _BATCH_LIMIT] for i in range(0, len(group), _BATCH_LIMIT)]
    return chunks


def deliver_spooled(mlflow_client, spool_dir: Path) -> tuple[int, int]:
    """Send runs that trials could not deliver during an outage. Returns (sent, left).

    Parents go first (a seed run needs its trial run). Each run is found again by its key,
    so delivering twice, or after part of a run got through, duplicates nothing. Records
    that still cannot be sent stay in their file for the next try (the next --resume).
    """
    from mlflow.entities import Metric

    sent = left = 0
    for path in sorted(Path(spool_dir).glob("*.jsonl")):
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        records.sort(key=lambda r: r["spec"].get("parent_key") is not None)
        keep = []
        for r in records:
            logger = RunLogger(mlflow_client, spec=RunSpec(**r["spec"]), params=r["params"],
                               tags=r["tags"])
            logger._metrics = [Metric(k, v, ts, step) for k, v, ts, step in r["metrics"]]
            logger._last_step = max((m.step for m in logger._metrics), default=-1)
            if logger.close(r["status"]):
                sent += 1
            else:
                keep.append(r)
        left += len(keep)
        if keep:
            path.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
        else:
            path.unlink()
    return sent, left
