"""Metric names as MLflow shows them: grouped by a prefix, the way CleanRL names its charts.

MLflow's chart view puts each prefix before "/" in a section of its own, so the 30-odd metrics
of a sweep read as a few groups (the setting's verdict, sample quality, the critic, losses,
cost) instead of one alphabetical list that starts with `diverged` and `eval_seconds`.

Only the MLflow writer and reader use these keys. The trainer, Tune, Optuna, `--json` and
the benchmark caches keep the plain names of `trainers/names.py`. Sweeps logged before the
prefixes existed (plain keys) read back the same: `plain` maps both to the plain name.
"""

from __future__ import annotations

from collections.abc import Mapping

from sweeper.analyse import objective as agg
from trainers import names

# Section -> the plain names logged under it. A name not listed is logged as it is.
GROUPS: dict[str, tuple[str, ...]] = {
    # The setting's verdict (trial runs): what `sweeper stable` ranks by.
    "sweep": (names.OBJECTIVE, names.RUNNING_OBJECTIVE, names.SUCCESS_RATE,
              names.FAILED_SEEDS, agg.DIVERGED_SEEDS, agg.HQ_FRACTION_MEAN,
              agg.MODES_HELD_MEAN, agg.MODES_COVERED_MEAN, agg.SCORE_MEDIAN, agg.FID_MEDIAN,
              agg.MODE_KL_MEDIAN, agg.COVERAGE_MEAN, agg.PRECISION_MEAN),
    # One seed's samples against the data.
    "quality": (names.HQ_FRACTION, names.MODES_HELD, names.MODES_COVERED, names.NUM_MODES,
                names.SEED_SCORE, names.SEED_SUCCESS, names.MODE_KL, names.FID, names.FID_N,
                names.KID, names.PRECISION, names.RECALL, names.DENSITY, names.COVERAGE,
                names.CLASSIFIER_ACC, names.DIVERGED),
    # What the theory says to watch: the W estimate and the critic's gradient norm.
    "critic": (names.W_DISTANCE, names.GRAD_NORM),
    "losses": (names.LOSS_D, names.LOSS_G),
    "cost": (names.STEP, names.STEPS_TRAINED, names.TRAIN_SECONDS, names.EVAL_SECONDS,
             "wall_seconds"),
}

_TO_MLFLOW = {name: f"{group}/{name}" for group, members in GROUPS.items() for name in members}
_TO_PLAIN = {key: name for name, key in _TO_MLFLOW.items()}


def mlflow_key(name: str) -> str:
    """The key a plain metric name is logged under."""
    return _TO_MLFLOW.get(name, name)


def plain(key: str) -> str:
    """The plain name of a logged key (a plain key, from an older sweep, stays as it is)."""
    return _TO_PLAIN.get(key, key)


def plain_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """A run's `data.metrics` by plain name, whichever way it was logged."""
    return {plain(k): v for k, v in metrics.items()}


def metrics_of(run) -> dict[str, float]:
    """The latest value of every metric of an MLflow run, by plain name."""
    return plain_metrics(run.data.metrics)


def history(client, run_id: str, name: str) -> list:
    """MLflow's Metric objects of one metric of one run, by plain name: under its prefixed
    key, or under the plain key in a sweep logged before the prefixes (one or two calls)."""
    key = mlflow_key(name)
    hist = client.get_metric_history(run_id, key)
    if not hist and key != name:
        hist = client.get_metric_history(run_id, name)
    return hist
