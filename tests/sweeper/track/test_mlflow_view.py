"""The saved MLflow view a sweep's link opens (sweeper.track.mlflow_view), against a real
MLflow store; what the browser shows with it is checked in tests/sweeper/cli/test_browser.py."""

from __future__ import annotations

from mlflow.entities import Metric

from sweeper.track import mlflow_view, store, tags
from tests.sweeper.track.test_reader import add_trial, final, sweep_store


def test_the_view_ranks_trials_and_charts_the_swept_params():
    state = mlflow_view.view_state(["lr_g", "gp_lambda", "loss"])
    assert state["searchFilter"] == "tags.`gan_sweeper.kind` = 'trial'"
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`sweep/objective`", True)
    cols = state["selectedColumns"]
    assert cols[:2] == ["metrics.`sweep/objective`", "metrics.`sweep/success_rate`"]
    assert cols[-3:] == ["params.`lr_g`", "params.`gp_lambda`", "params.`loss`"]
    assert f"tags.`{tags.TAG_STATUS}`" in cols
    first = state["compareRunCharts"][0]
    assert first["type"] == "PARALLEL"
    assert first["selectedParams"] == ["lr_g", "gp_lambda", "loss"]
    assert first["selectedMetrics"] == ["sweep/running_objective"]
    (section,) = state["compareRunSections"]
    assert {c["metricSectionId"] for c in state["compareRunCharts"]} == {section["uuid"]}
    assert state["runsHiddenMode"] == "SHOW_ALL" and state["isAccordionReordered"]
    # A sweep logged before the prefixes: plain keys everywhere.
    old = mlflow_view.view_state(["lr_g"], prefixed=False)
    assert old["orderByKey"] == "metrics.`objective`"
    assert old["compareRunCharts"][0]["selectedMetrics"] == ["running_objective"]


def test_the_tag_is_mlflow_317s_saved_view_envelope():
    value = mlflow_view.tag_value(["lr_g"], now_ms=123)
    import json

    env = json.loads(value)
    assert env["name"] == mlflow_view.VIEW_NAME and env["createdAt"] == 123
    assert env["state"].startswith("deflate;")
    assert mlflow_view.decode(value) == mlflow_view.view_state(["lr_g"])
    # A space with many params still fits MLflow's 20,000-character tag limit.
    assert len(mlflow_view.tag_value([f"param_{i}" for i in range(200)])) < 20_000


def test_a_sweep_without_a_view_gets_one_and_train_experiments_none(tmp_path,
                                                                     tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory)
    add_trial(s, "t0", [final()], values={"lr_g": 1e-3})
    add_trial(s, "t1", [final()], values={"lr_g": 2e-3})
    assert mlflow_view.ensure_view(s.client, s.exp_id)
    state = mlflow_view.decode(s.client.get_experiment(s.exp_id).tags[mlflow_view.VIEW_TAG])
    assert state["compareRunCharts"][0]["selectedParams"] == ["lr_g"]
    assert state["orderByKey"] == "metrics.`sweep/objective`"
    # Present: left as it is (a sweep's own view names its space's params).
    mlflow_view.write_view(s.client, s.exp_id, ["lr_g", "lr_d"])
    assert mlflow_view.ensure_view(s.client, s.exp_id)
    state = mlflow_view.decode(s.client.get_experiment(s.exp_id).tags[mlflow_view.VIEW_TAG])
    assert state["compareRunCharts"][0]["selectedParams"] == ["lr_g", "lr_d"]
    # An experiment of `sweeper train` runs has no trials, so no view: the plain runs page.
    other = store.experiment_id(s.client, "train-runs")
    run = s.client.create_run(other).info.run_id
    s.client.log_batch(run, metrics=[Metric("fid", 1.0, 0, 1)])
    assert not mlflow_view.ensure_view(s.client, other)
    assert mlflow_view.VIEW_TAG not in s.client.get_experiment(other).tags
    link = store.runs_view_url(s.uri, other, view=False)
    assert "viewStateShareKey" not in link and link.endswith("workflowType=machine_learning")


def test_a_sweep_logged_with_plain_keys_gets_a_view_with_plain_keys(tmp_path,
                                                                     tmp_path_factory):
    s = sweep_store(tmp_path, tmp_path_factory)
    for i, lr in enumerate((1e-3, 2e-3)):
        run = add_trial(s, f"t{i}", [None], values={"lr_g": lr})
        s.client.log_batch(run, metrics=[Metric("running_objective", 0.5, 0, 4)])
    assert mlflow_view.ensure_view(s.client, s.exp_id)
    state = mlflow_view.decode(s.client.get_experiment(s.exp_id).tags[mlflow_view.VIEW_TAG])
    assert state["orderByKey"] == "metrics.`objective`"
