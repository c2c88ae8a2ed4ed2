"""RunLogger against a real MLflow store: lazy open by key, idempotent re-logging, spooling
while the store is unreachable and later delivery with nothing duplicated."""

from __future__ import annotations

from sweeper.track import store, tags
from sweeper.track.metric_keys import history, metrics_of


def spec(exp_id: str, key: str = "trial/s/t1", parent_key: str | None = None):
    return store.RunSpec(exp_id, key, "t1", {tags.TAG_KIND: "trial"},
                            parent_key=parent_key)


def new_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    c = store.client(uri)
    return c, store.experiment_id(c, "exp 'quoted' \"name\"")


def test_reopened_run_skips_steps_already_logged(tmp_path):
    c, exp = new_store(tmp_path)
    first = store.RunLogger(c, spec=spec(exp), params={"a": 1})
    for step in (10, 20):
        first.log_metrics(step, {"fid": float(step)})
    assert first.flush()
    # A retried trial recomputes steps 10..30 and opens the same run again by its key.
    second = store.RunLogger(c, spec=spec(exp), params={"a": 1})
    for step in (10, 20, 30):
        second.log_metrics(step, {"fid": float(step)})
    assert second.close("finished")
    assert second.run_id == first.run_id
    hist = history(c, first.run_id, "fid")
    assert [m.step for m in hist] == [10, 20, 30]
    assert len(c.search_runs([exp])) == 1


def test_spooled_runs_are_delivered_once_parents_first(tmp_path):
    c, exp = new_store(tmp_path)
    dead = store.client("http://127.0.0.1:9")  # nothing listens there: an outage
    store.quiet_http_retries()
    spool = tmp_path / "unsent" / "t1.jsonl"
    trial = store.RunLogger(dead, spec=spec(exp), params={"lr": 0.1}, spool=spool)
    seed = store.RunLogger(dead, spec=store.RunSpec(
        exp, "trial/s/t1/seed/0", "t1-seed0", {tags.TAG_KIND: "seed"},
        parent_key="trial/s/t1"), params={"seed": 0}, spool=spool)
    for step in (5, 10):
        trial.log_metrics(step, {"objective": 1.0 / step})
        seed.log_metrics(step, {"fid": float(step), "nan_dropped": float("nan")})
    assert not seed.close("finished") and not trial.close("finished")  # seed spooled first
    assert store.deliver_spooled(c, spool.parent) == (2, 0)
    assert not spool.exists()
    runs = {r.data.tags[tags.TAG_KIND]: r for r in c.search_runs([exp])}
    assert runs["seed"].data.tags[tags.PARENT_TAG] == runs["trial"].info.run_id
    assert runs["seed"].data.params == {"seed": "0"}
    assert runs["seed"].data.tags[tags.TAG_STATUS] == "finished"
    assert [m.step for m in history(c, runs["seed"].info.run_id, "fid")] == [5, 10]
    assert "nan_dropped" not in metrics_of(runs["seed"])
    assert store.deliver_spooled(c, spool.parent) == (0, 0)  # nothing left, nothing doubled
    assert len(c.search_runs([exp])) == 2


_OPEN_AT = """
import sys, time
from sweeper.track import store
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
store.client(sys.argv[1]).search_experiments()
"""


def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path):
    # Without the lock in store.client, MLflow's Alembic migrations collide here ("table
    # ... already exists"): seen when a test or `sweeper stable` polls a sweep's new store.
    import subprocess
    import sys
    import time

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    start = time.time() + 8  # every process has imported MLflow by then
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, uri, str(start)],
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-500:] for e in errors]


def test_a_tag_write_that_fails_is_sent_at_the_next_flush(tmp_path, monkeypatch):
    # Row 11 of reliability round 3: a restored trial re-tags its run with the node it now
    # runs on; a write lost to a busy store left the old node's tag. The failure here is
    # real: the client points at a port nothing listens on (connection refused).
    from tests.procs import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    c, exp = new_store(tmp_path)
    logger = store.RunLogger(c, spec=spec(exp), tags={tags.TAG_NODE_ID: "worker"})
    assert logger.flush()
    logger.client = store.client(f"http://127.0.0.1:{free_port()}")
    logger.set_tags({tags.TAG_NODE_ID: "head"})
    logger.log_metrics(5, {"fid": 1.0})
    assert not logger.flush()  # the outage: nothing is lost, nothing claimed sent
    assert c.get_run(logger.run_id).data.tags[tags.TAG_NODE_ID] == "worker"
    logger.client = c  # the store is back
    assert logger.close("finished")
    run = c.get_run(logger.run_id)
    assert run.data.tags[tags.TAG_NODE_ID] == "head"
    assert run.data.tags[tags.TAG_STATUS] == "finished"
    assert [m.step for m in history(c, logger.run_id, "fid")] == [5]


def test_a_step_whose_tag_never_came_is_not_logged_again(tmp_path):
    # Row 11 of reliability round 3, 8th repeated run: the lost node's trainer died after a
    # step's metrics reached MLflow and before the last-step tag did; restored from the
    # checkpoint before, the trial logged that step a second time. A restarted logger now
    # also reads how far the `step` metric got.
    from trainers import names

    c, exp = new_store(tmp_path)
    first = store.RunLogger(c, spec=spec(exp))
    for step in (10, 20):
        first.log_metrics(step, {names.STEP: float(step), "fid": float(step)})
    assert first.flush()
    first.log_metrics(30, {names.STEP: 30.0, "fid": 30.0})
    first._send_tags = lambda: False  # the process dies right after the metrics went out
    first.flush()
    run = c.get_run(first.run_id)
    assert run.data.tags[tags.TAG_LAST_STEP] == "20"  # one evaluation behind
    restored = store.RunLogger(c, spec=spec(exp))  # restarted from its step-20 checkpoint
    for step in (30, 40):
        restored.log_metrics(step, {names.STEP: float(step), "fid": float(step)})
    assert restored.close("finished")
    assert [m.step for m in history(c, first.run_id, "fid")] == [10, 20, 30, 40]


def test_a_step_is_sent_whole_in_one_call():
    from mlflow.entities import Metric

    def step(s, n):
        return [Metric(f"m{i}", 1.0, 0, s) for i in range(n)]

    chunks = store._chunks(step(1, 600) + step(2, 600) + step(3, 300) + step(4, 2500))
    assert [len(c) for c in chunks] == [600, 900, 1000, 1000, 500]
    assert {m.step for m in chunks[1]} == {2, 3}  # steps 2 and 3 whole, together
    assert all(len(c) <= store._BATCH_LIMIT for c in chunks)
