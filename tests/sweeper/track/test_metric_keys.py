"""MLflow metric keys grouped by prefix (`quality/hq_fraction`, ...), and sweeps logged before
the prefixes read back the same (issue 38, item 2)."""

from __future__ import annotations

import pytest
from mlflow.entities import Metric

from sweeper.analyse import objective
from sweeper.track import metric_keys, reader, store
from tests.sweeper.track.test_reader import add_trial, final, sweep_store
from trainers import names
from trainers.config import make_config
from trainers.members import make_members


def test_every_name_has_one_key_and_comes_back():
    listed = [n for members in metric_keys.GROUPS.values() for n in members]
    assert len(listed) == len(set(listed))
    for name in listed:
        key = metric_keys.mlflow_key(name)
        assert key.count("/") == 1 and key.endswith("/" + name)
        assert metric_keys.plain(key) == name
        assert metric_keys.plain(name) == name  # an older sweep's plain key
    # A name we do not know (a user's own metric) is logged and read as it is.
    assert metric_keys.mlflow_key("my_metric") == "my_metric"
    assert metric_keys.plain("my/metric") == "my/metric"
    assert metric_keys.mlflow_key(names.OBJECTIVE) == "sweep/objective"
    assert metric_keys.mlflow_key(names.HQ_FRACTION) == "quality/hq_fraction"
    assert metric_keys.mlflow_key(names.W_DISTANCE) == "critic/w_distance"


@pytest.mark.parametrize("loss", ["wgan-gp", "bce"])
def test_every_metric_a_trial_logs_has_a_section(loss):
    # What a seed run and a trial run log, from a real evaluation: nothing lands outside the
    # sections (the chart view would list it alone, ungrouped).
    cfgs = [make_config({"dataset": "ring8", "loss": loss, "steps": 4, "hidden": 8,
                         "depth": 1, "batch_size": 8, "eval_every": 2, "eval_samples": 64,
                         "seed": s}) for s in (0, 1)]
    members = make_members(cfgs)
    members.train_until(2)
    latest = members.evaluate()
    agg = {**objective.aggregate(latest), names.STEP: 2.0, names.STEPS_TRAINED: 4.0,
           names.OBJECTIVE: 1.0}
    for key in [*latest[0], *agg]:
        assert "/" in metric_keys.mlflow_key(key), key


def test_a_sweep_logged_with_plain_keys_reads_the_same(tmp_path, tmp_path_factory):
    new = sweep_store(tmp_path / "new", tmp_path_factory)
    add_trial(new, "t0", [final(), final(held=6)])
    old = sweep_store(tmp_path / "old", tmp_path_factory)
    add_trial(old, "t0", [None, None])  # no seed runs yet: they follow, with plain keys
    seed_runs = []
    for j, m in enumerate([final(), final(held=6)]):
        run_id, _ = store.find_or_create_run(
            old.client, old.exp_id, store.safe_key("trial", old.sweep_key, "t0", "seed", j),
            name=f"t0-seed{j}", tags={"gan_sweeper.kind": "seed", "gan_sweeper.seed": str(j),
                                      "gan_sweeper.status": "finished",
                                      "mlflow.parentRunId": reader.load_sweep(
                                          old.uri, old.name).trials[0].run_id})
        old.client.log_batch(run_id, metrics=[Metric(k, v, 0, 4) for k, v in m.items()])
        seed_runs.append(run_id)
    a, b = reader.load_sweep(new.uri, new.name), reader.load_sweep(old.uri, old.name)
    assert [s.metrics for s in a.trials[0].seeds] == [s.metrics for s in b.trials[0].seeds]
    raw = new.client.get_run(a.trials[0].seeds[0].run_id).data.metrics
    assert "quality/hq_fraction" in raw and names.HQ_FRACTION not in raw
    # Curves too: by plain name, under either key.
    assert reader.metric_history(old.client, seed_runs[1], names.MODES_HELD) == [(4, 6.0)]
    assert reader.metric_history(new.client, a.trials[0].seeds[1].run_id,
                                 names.MODES_HELD) == [(2, 3.0), (4, 6.0)]
