"""The sweep's results table: one row per setting from Tune's results (a fused trial gives
a row per setting), ranked best first, and how each setting ended for the Optuna study."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sweeper.analyse import objective
from trainers import names

_TRIAL_DIR = re.compile(r"^run_trial_([0-9a-f]+)_")


def trial_metrics(result) -> dict[str, Any]:
    """A Tune Result's metrics, or {} when they belong to another trial: a trial that never
    reported, on a reused actor, can carry the last result of the trial before it."""
    m = result.metrics or {}
    folder_id = _folder_trial_id(result)
    if folder_id and m.get("trial_id") not in (None, folder_id):
        return {}
    return m


def _folder_trial_id(result) -> str | None:
    """The Tune trial id in a result's folder name (`run_trial_<id>_...`), or None."""
    found = _TRIAL_DIR.match(Path(result.path).name) if result.path else None
    return found.group(1) if found else None


def result_rows(grid, sampled: list[str], unfinished: set[str] = frozenset()
                ) -> list[dict[str, Any]]:
    """One row per trial, best first: finished trials by objective, then the rest. Trials
    in `unfinished` were cut off by an interruption (a resume continues them)."""
    from sweeper.tune.progress import last_line
    from sweeper.tune.trial import RUN_ID
    from sweeper.tune.trial_ids import FUSED

    rows = []
    for r in grid:
        m = trial_metrics(r)
        cut = "interrupted" if m.get("trial_id") in unfinished else "stopped"
        error = last_line(r.error) if r.error else ""
        settings = _settings_of(r, m)
        if settings is not None:  # a fused trial: a row per setting
            for e, params in zip(settings, (r.config or {}).get(FUSED, []), strict=True):
                sm, how = e.get("metrics", {}), e["status"]
                status = ("finished" if how == "finished" and names.OBJECTIVE in sm
                          else "error" if r.error and how == "running"
                          else f"stopped@{e['step']}" if how == "stopped_early"
                          else f"{cut}@{int(sm.get(names.STEP, 0))}")
                rows.append(table_row(e["id"], status,
                                      {k: v for k, v in params.items() if k in sampled}, sm,
                                      e.get("run_id") or "", error if how == "running" else ""))
            continue
        cfg = {k: v for k, v in (r.config or {}).items() if k in sampled}
        status = ("error" if r.error else "finished" if names.OBJECTIVE in m
                  else f"{cut}@{int(m.get(names.STEP, 0))}" if m else "not started")
        rows.append(table_row(m.get("trial_id", ""), status, cfg, m, m.get(RUN_ID, ""), error))
    return rank(rows)


def _settings_of(result, metrics: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A fused trial's setting summaries (its last report's, or `_unreported_settings`);
    None for an unfused trial."""
    from sweeper.tune.trial_ids import fused_settings

    return fused_settings(metrics) or _unreported_settings(result)


def _unreported_settings(result) -> list[dict[str, Any]] | None:
    """Summaries of a fused trial that never reported (it failed first): every setting
    still "running", so the caller says how it ended. None for an unfused trial."""
    from sweeper.tune.trial_ids import FUSED, setting_ids, summary

    config, folder_id = result.config or {}, _folder_trial_id(result)
    if FUSED not in config or folder_id is None:
        return None
    return [summary(sid, "running", 0, None, {}) for sid in setting_ids(folder_id, config)]


def trial_outcomes(results) -> dict[str, Any]:
    """Setting id -> how it ended, for `reconcile_study`: its final objective, None (stopped
    early) or "error"; a fused trial's settings each have their own."""
    out: dict[str, Any] = {}
    for r in results:
        m = trial_metrics(r)
        settings = _settings_of(r, m)
        if "trial_id" not in m and settings is None:
            continue
        if settings is None:
            out[m["trial_id"]] = "error" if r.error else m.get(names.OBJECTIVE)
            continue
        for e in settings:
            ended = e["status"] in ("finished", "stopped_early")
            out[e["id"]] = ("error" if r.error and not ended
                            else e.get("metrics", {}).get(names.OBJECTIVE)
                            if e["status"] == "finished" else None)
    return out


def table_row(trial_id: str, status: str, params: dict[str, Any], m: dict[str, Any],
              run_id: str, error: str = "") -> dict[str, Any]:
    """One row of the results table, from a trial's aggregate metrics `m` (a Tune result, or
    its MLflow trial run's metrics: the same names)."""
    return {"trial_id": trial_id, "status": status, "params": params,
            "objective": m.get(names.OBJECTIVE), "success_rate": m.get(names.SUCCESS_RATE),
            "fid_median": m.get(objective.FID_MEDIAN), "score": m.get(objective.SCORE_MEDIAN),
            "modes": m.get(objective.MODES_HELD_MEAN), "hq": m.get(objective.HQ_FRACTION_MEAN),
            "coverage": m.get(objective.COVERAGE_MEAN),
            "precision": m.get(objective.PRECISION_MEAN), "run_id": run_id, "error": error}


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished trials by objective (best first), then the rest."""
    return sorted(rows, key=lambda r: (r["objective"] is None, r["objective"] or 0.0))


def failed_rows(rows: list[dict[str, Any]]) -> str:
    """One line naming the settings that ended in an error (after their retries), or ""."""
    failed = [r for r in rows if r["status"] == "error"]
    if not failed:
        return ""
    which = "; ".join(f"trial {r['trial_id']}: {r.get('error') or 'error'}" for r in failed[:5])
    more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
    return (f"{len(failed)} of {len(rows)} settings failed after their retries ({which}{more}); "
            "each one's traceback is error.txt on its MLflow trial run")


def format_table(rows: list[dict[str, Any]], top: int | None = None) -> str:
    """A markdown table of trials: rank, status, objective, success, HQ, score, FID, params."""
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    # Data without labelled modes: precision and coverage take the HQ and modes columns.
    modes = any(r.get("hq") is not None for r in rows) or \
        not any(r.get("coverage") is not None for r in rows)
    hq, held = ("hq", "modes") if modes else ("precision", "coverage")
    lines = [f"| # | trial | status | objective | success | {'HQ' if modes else 'precision'} "
             f"| median score | median FID | {'modes held' if modes else 'coverage'} | params "
             "| MLflow run |", "|---" * 11 + "|"]
    for i, r in enumerate(rows[:top] if top else rows, 1):
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(r["params"].items()))
        lines.append(f"| {i} | {r['trial_id']} | {r['status']} | {f(r['objective'], '.4f')} | "
                     f"{f(r['success_rate'], '.2f')} | {f(r.get(hq), '.2f')} | "
                     f"{f(r['score'], '.3f')} | {f(r['fid_median'], '.4g')} | "
                     f"{f(r.get(held), '.1f' if modes else '.2f')} | {params} | "
                     f"{r['run_id'][:12]} |")
    return "\n".join(lines)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
