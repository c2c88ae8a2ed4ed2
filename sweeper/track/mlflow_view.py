"""The MLflow view a sweep's link opens: its trials ranked best first, made for comparing.

MLflow 3.17 opens an experiment on its runs sorted by start time, one collapsed parent row,
no metric columns and one chart per metric in alphabetical order. It also loads a saved view
from an experiment tag (`mlflow.sharedViewState.<key>`) when the link carries
`viewStateShareKey=<key>`, replacing the visitor's stored layout; that is the one way a server
can choose what a first visit shows, so each sweep's experiment gets one such view:

- only the trial runs (one per setting), as a flat list sorted by the final objective, best
  first (a sort other than start time flattens MLflow's nesting by itself; ASHA-stopped
  trials have no objective and come last);
- columns: the objective, success rate, mean HQ fraction and modes held, mean coverage and
  precision (the verdict of data without labelled modes), the median seed score, the step
  reached, the status, and every swept param;
- charts, first: a parallel-coordinates chart of the swept params against the running
  objective (every trial has one, also those ASHA stopped, at the step they reached), the
  objective and the success rate per trial, and the mean-HQ and modes-held curves. MLflow
  adds the trial runs' other metrics after these, in sections by prefix (`metric_keys`).

`compareRunsMode` is not part of a saved view, so the link names it (CHART: the parallel
coordinates without a click). The nested tree (sweep -> trials -> seeds) stays one click
away: "Exit shared view" in MLflow's banner.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Sequence

from sweeper.analyse import objective as agg
from sweeper.track import tags
from sweeper.track.metric_keys import mlflow_key
from trainers import names

VIEW_KEY = "gan-sweeper"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "gan-sweeper: trials, best first"
# MLflow refuses experiment tag values over 20,000 characters (3.17: the server and the UI).
MAX_TAG = 20_000

COLUMN_METRICS = (names.OBJECTIVE, names.SUCCESS_RATE, agg.HQ_FRACTION_MEAN,
                  agg.MODES_HELD_MEAN, agg.COVERAGE_MEAN, agg.PRECISION_MEAN, agg.SCORE_MEDIAN,
                  names.STEP)
TRIALS_ONLY = f"tags.`{tags.TAG_KIND}` = 'trial'"


def view_state(swept: Sequence[str], *, prefixed: bool = True) -> dict:
    """The saved view's state, in MLflow 3.17's format. `prefixed`: the sweep logged its
    metrics under `metric_keys` prefixes (False for sweeps logged before them)."""
    m = mlflow_key if prefixed else str  # the key a metric was logged under
    section = "gs-sweep"
    common = {"metricSectionId": section, "isGenerated": False, "deleted": False}

    def line(uuid: str, name: str) -> dict:
        return {**common, "uuid": uuid, "type": "LINE", "metricKey": m(name),
                "lineSmoothness": 0, "xAxisKey": "step", "selectedXAxisMetricKey": "",
                "xAxisScaleType": "linear", "scaleType": "linear", "yAxisKey": "metric",
                "yAxisExpressions": [], "ignoreOutliers": False, "useGlobalXaxisKey": True,
                "useGlobalLineSmoothing": True, "range": {}}

    charts = [
        {**common, "uuid": "gs-parallel", "type": "PARALLEL",
         "selectedParams": list(swept), "selectedMetrics": [m(names.RUNNING_OBJECTIVE)],
         "showAllRuns": True},
        {**common, "uuid": "gs-objective", "type": "BAR", "metricKey": m(names.OBJECTIVE)},
        {**common, "uuid": "gs-success", "type": "BAR", "metricKey": m(names.SUCCESS_RATE)},
        line("gs-hq", agg.HQ_FRACTION_MEAN),
        line("gs-held", agg.MODES_HELD_MEAN),
    ]
    # The section is named like the prefix of the trial metrics, so MLflow adds the rest of
    # them after these charts instead of in a section of their own.
    sections = [{"uuid": section, "name": "sweep" if prefixed else "Model metrics",
                 "display": True, "isReordered": True, "deleted": False,
                 "isGenerated": False}]
    return {
        "searchFilter": TRIALS_ONLY,
        "orderByKey": f"metrics.`{m(names.OBJECTIVE)}`",
        "orderByAsc": True,  # the objective is minimised
        "startTime": "ALL", "lifecycleFilter": "Active", "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": ([f"metrics.`{m(k)}`" for k in COLUMN_METRICS]
                            + [f"tags.`{tags.TAG_STATUS}`"]
                            + [f"params.`{p}`" for p in swept]),
        "runsHiddenMode": "SHOW_ALL",  # MLflow's default plots only the first 10 rows
        "hideEmptyCharts": True, "useGroupedValuesInCharts": True, "groupBy": None,
        "viewMaximized": False, "runListHidden": False,
        "isAccordionReordered": True,  # keep this section first
        "compareRunSections": sections, "compareRunCharts": charts,
    }


def tag_value(swept: Sequence[str], *, prefixed: bool = True,
              now_ms: int | None = None) -> str:
    """The experiment tag's value: MLflow 3.17's saved-view envelope around the deflated
    state (the format its own "Save view" writes, so the view is listed under Views)."""
    state = json.dumps(view_state(swept, prefixed=prefixed), separators=(",", ":"))
    blob = "deflate;" + base64.b64encode(zlib.compress(state.encode())).decode()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    value = json.dumps({"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": blob})
    if len(value) > MAX_TAG:  # thousands of swept params; never for a readable space
        raise ValueError(f"the MLflow view for {len(swept)} swept params is too large")
    return value


def decode(value: str) -> dict:
    """The state inside a tag value written by `tag_value` (tests and `ensure_view`)."""
    blob = json.loads(value)["state"]
    return json.loads(zlib.decompress(base64.b64decode(blob[len("deflate;"):])))


def write_view(client, exp_id: str, swept: Sequence[str], *, prefixed: bool = True) -> None:
    client.set_experiment_tag(exp_id, VIEW_TAG, tag_value(swept, prefixed=prefixed))


def ensure_view(client, exp_id: str) -> bool:
    """Whether the experiment has the view, writing it for a sweep logged before views
    existed (the params that differ between its trials are the swept ones). An experiment
    with no trial runs (`sweeper train`'s) gets none."""
    if VIEW_TAG in client.get_experiment(exp_id).tags:
        return True
    trials = client.search_runs([exp_id], filter_string=TRIALS_ONLY, max_results=5000)
    if not trials:
        return False
    values: dict[str, set[str]] = {}
    for r in trials:
        for k, v in r.data.params.items():
            values.setdefault(k, set()).add(v)
    swept = sorted(k for k, v in values.items() if len(v) > 1 and k != "seeds")
    prefixed = not any(names.RUNNING_OBJECTIVE in r.data.metrics for r in trials)
    write_view(client, exp_id, swept, prefixed=prefixed)
    return True
