"""`sweeper report`: PNG figures and a markdown summary of a sweep's stability.

Figures (each skipped with a note in summary.md when the sweep has nothing to draw):
    heatmap_<x>_x_<y>.png      success rate, mean HQ and median score per cell (stable regions)
    coverage_vs_step.png       modes held vs step, top settings and a failing one
    samples.png                last sample plot of the best and of a collapsed setting
    grad_norm_by_loss.png      critic gradient norm at the interpolates vs step, per loss
    optuna_importances.png     Optuna parameter importances (persisted study)
    optuna_parallel.png        Optuna parallel coordinates
    summary.md                 the tables, the definitions, links to the PNGs

Metric histories are read only for the handful of runs a figure draws.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sweeper.analyse import stability  # noqa: E402
from sweeper.analyse.stability import RegionGrid, Setting, SettingStats  # noqa: E402
from sweeper.track.reader import SweepRecords, TrialRun, metric_history  # noqa: E402
from trainers import names  # noqa: E402

# Stable-region heatmaps: (x, y) parameter pairs, drawn when the sweep varied both.
REGION_PAIRS = (("gp_lambda", "n_critic"), ("penalty_weight", "n_critic"), ("lr_d", "n_critic"),
                ("lr_g", "n_critic"))


def region_pairs(sampled: Sequence[str]) -> list[tuple[str, str]]:
    """The heatmap pairs over params the sweep sampled (all pairs when that is unknown): a
    param the space left alone differs between settings only through each loss's default
    (wgan-clip's lr 5e-5 against wgan-gp's 1e-4), and a map over it is a map of the loss."""
    return [(x, y) for x, y in REGION_PAIRS if not sampled or {x, y} <= set(sampled)]
# Coverage curves show this many of the top settings (plus one collapsed setting).
TOP_CURVES = 3
# Optuna's importance estimate needs a few complete trials to mean anything (Optuna itself
# refuses fewer than 2); below this we write a note instead of a misleading bar chart.
MIN_COMPLETE_FOR_IMPORTANCE = 3
DPI = 110


@dataclass
class Report:
    """What `write_report` produced: the files, and notes on what it skipped and why."""

    out: Path
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- tables
def fmt(v: Any, spec: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec) if isinstance(v, float) else str(v)


def stats_table(stats: Sequence[SettingStats], params: Sequence[str], *,
                first: tuple[str, Sequence[str]] | None = None) -> str:
    """Markdown table of settings; `params` are the (varied) parameters to show.

    `first` is the first column (header, one cell per row); default: the rank 1, 2, ...
    """
    first = first or ("#", [str(i) for i in range(1, len(stats) + 1)])
    modes = any(s.labelled for s in stats)
    head = [first[0], "trial", "seeds from", "loss", *params, "success",
            "Wilson 95%", "bootstrap 95%", "HQ mean" if modes else "precision mean",
            "median score [95% CI]", "median FID [95% CI]", "FID min-max",
            *(["mode KL median [min-max]", "modes held mean (min)"] if modes else
              ["coverage mean"])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lead, s in zip(first[1], stats, strict=True):
        cells = [lead, s.label,
                 "confirm" if s.source == "confirm" else "sweep", str(s.params.get("loss", "-"))]
        cells += [fmt(s.params.get(p)) if stability.applies(p, s.params) else "-"
                  for p in params]
        cells += [f"{s.successes}/{s.n_seeds}", _interval(s.success_wilson, ".2f"),
                  _interval(s.success_boot, ".2f"),
                  fmt(s.hq_fraction_mean if modes else s.precision_mean, ".3f"),
                  f"{fmt(s.score_median, '.3f')} {_interval(s.score_ci, '.3f')}",
                  f"{fmt(s.fid_median, '.4g')} {_interval(s.fid_ci, '.4g')}",
                  _interval(s.fid_range, ".4g", brackets=False)]
        cells += ([f"{fmt(s.mode_kl_median)} {_interval(s.mode_kl_range, '.3g')}",
                   f"{fmt(s.modes_held_mean, '.1f')} ({fmt(s.modes_held_min, '.0f')})"
                   f"/{fmt(s.num_modes, '.0f')}"] if modes else
                  [fmt(s.coverage_mean, ".3f")])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def flagged_table(stats: Sequence[SettingStats], params: Sequence[str], *,
                  compact: bool = False) -> str:
    first = ("flag", [", ".join(s.flags) for s in stats])
    if compact:
        return compact_table(stats, params, first=first)
    return stats_table(stats, params, first=first)


# What `sweeper stable` prints fits a terminal this wide; `--wide` prints stats_table.
TERMINAL_WIDTH = 160


def compact_table(stats: Sequence[SettingStats], params: Sequence[str], *,
                  first: tuple[str, Sequence[str]] | None = None,
                  width: int = TERMINAL_WIDTH) -> str:
    """`stats_table`'s key columns, at most `width` characters a line: rank, trial, loss,
    params, success, its Wilson interval, HQ, median score and FID, modes held. Param
    columns that do not fit are left out, and a last line names them."""
    first = first or ("#", [str(i) for i in range(1, len(stats) + 1)])
    modes = any(s.labelled for s in stats)  # else precision and coverage judge (quality.py)

    def build(shown: Sequence[str]) -> list[str]:
        head = [first[0], "trial", "loss", *shown, "success", "Wilson 95%",
                "HQ" if modes else "precision", "score", "FID",
                "modes held" if modes else "coverage"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for lead, s in zip(first[1], stats, strict=True):
            loss = str(s.params.get("loss", "-"))
            cells = [lead, s.label + ("*" if s.source == "confirm" else ""), loss]
            cells += [fmt(s.params.get(p)) if stability.applies(p, s.params) else "-"
                      for p in shown]
            cells += [f"{s.successes}/{s.n_seeds}", _interval(s.success_wilson, ".2f"),
                      fmt(s.hq_fraction_mean if modes else s.precision_mean, ".3f"),
                      fmt(s.score_median, ".3f"), fmt(s.fid_median, ".3g"),
                      f"{fmt(s.modes_held_mean, '.1f')}/{fmt(s.num_modes, '.0f')}" if modes
                      else fmt(s.coverage_mean, ".3f")]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    shown = list(params)
    lines = build(shown)
    while shown and max(len(x) for x in lines) > width:
        shown.pop()
        lines = build(shown)
    hidden = [p for p in params if p not in shown]
    if any(s.source == "confirm" for s in stats):
        lines.append("* seeds from `--confirm` (fresh seeds), not the sweep's")
    if hidden:
        lines.append(f"({len(hidden)} more param column(s) left out to fit {width} "
                     f"characters: {', '.join(hidden)}; `--wide` shows every column)")
    return "\n".join(lines)


def region_table(grid: RegionGrid) -> str:
    """Markdown: success k/n, mean HQ, median score and FID per cell; rows are y bins."""
    rate = grid.success_rate
    head = [f"{grid.y.name} \\ {grid.x.name}{' (log bins)' if grid.x.log else ''}",
            *grid.x.labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, ylab in enumerate(grid.y.labels):
        cells = [ylab]
        for j in range(len(grid.x.labels)):
            n = int(grid.seeds[i, j])
            cells.append("-" if n == 0 else f"{int(grid.successes[i, j])}/{n} "
                         f"({rate[i, j]:.0%}), HQ {float(grid.hq_mean[i, j]):.2f}, score "
                         f"{float(grid.score_median[i, j]):.3f}, FID "
                         f"{fmt(float(grid.fid_median[i, j]), '.3g')}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval(iv: tuple[float, float], spec: str, *, brackets: bool = True) -> str:
    body = f"{fmt(iv[0], spec)}-{fmt(iv[1], spec)}"
    return f"[{body}]" if brackets else body


# ---------------------------------------------------------------------------- figures
def _save(fig, rep: Report, name: str) -> str:
    path = rep.out / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    rep.files.append(name)
    return name


def heatmap_figure(grid: RegionGrid, title: str):
    """Three panels over the x-by-y bins: success rate, mean HQ and median score, annotated."""
    fig, axes = plt.subplots(1, 3, figsize=(5 + 2.3 * len(grid.x.labels), 1.2 + 0.7 * len(
        grid.y.labels)), squeeze=False)
    rate = grid.success_rate
    panels = ((rate, "success rate (pooled seeds)", "RdYlGn", "{:.0%}"),
              (grid.hq_mean, "mean HQ fraction (higher is better)", "RdYlGn", "{:.2f}"),
              (grid.score_median, "median seed_score (lower is better)", "RdYlGn_r", "{:.3f}"))
    for ax, (data, label, cmap, spec) in zip(axes[0], panels, strict=True):
        cm = plt.get_cmap(cmap).with_extremes(bad="lightgrey")  # empty cells
        im = ax.imshow(np.ma.masked_invalid(data), cmap=cm, aspect="auto", origin="lower",
                       vmin=0.0, vmax=1.0)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                n = int(grid.seeds[i, j])
                if n == 0:
                    continue
                text = (f"{int(grid.successes[i, j])}/{n}" if data is rate
                        else spec.format(float(data[i, j])))
                ax.text(j, i, text, ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(grid.x.labels)), grid.x.labels, rotation=30, ha="right",
                      fontsize=8)
        ax.set_yticks(range(len(grid.y.labels)), grid.y.labels, fontsize=8)
        ax.set_xlabel(grid.x.name + (" (log bins)" if grid.x.log else ""))
        ax.set_ylabel(grid.y.name)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _histories(client, trial: TrialRun, key: str) -> list[list[tuple[int, float]]]:
    return [h for s in trial.seeds if (h := metric_history(client, s.run_id, key))]


def coverage_figure(client, picks: Sequence[tuple[str, TrialRun]], num_modes: float,
                    min_coverage: float):
    """Modes held vs step: one colour per setting, one thin line per seed. Runs logged before
    `modes_held` existed show modes covered instead."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (label, trial), color in zip(picks, plt.get_cmap("tab10").colors, strict=False):
        hists = (_histories(client, trial, names.MODES_HELD)
                 or _histories(client, trial, names.MODES_COVERED))
        for k, hist in enumerate(hists):
            steps, vals = zip(*hist, strict=True)
            ax.plot(steps, vals, color=color, lw=1.2, alpha=0.8, label=label if k == 0 else None)
    if math.isfinite(num_modes):
        ax.axhline(min_coverage * num_modes, color="grey", ls="--", lw=0.8,
                   label=f"success needs {min_coverage:.0%} of {num_modes:.0f} held")
    ax.set_xlabel("generator step")
    ax.set_ylabel("modes held")
    ax.set_title("Mode coverage during training (one line per seed)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def grad_norm_figure(client, picks: Sequence[tuple[str, TrialRun]]):
    """Median (over seeds) critic gradient norm at the interpolates vs step, min-max band."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (label, trial), color in zip(picks, plt.get_cmap("tab10").colors, strict=False):
        by_step: dict[int, list[float]] = {}
        for hist in _histories(client, trial, names.GRAD_NORM):
            for step, v in hist:
                by_step.setdefault(step, []).append(v)
        if not by_step:
            continue
        steps = sorted(by_step)
        med = [statistics.median(by_step[s]) for s in steps]
        ax.plot(steps, med, color=color, lw=1.5, label=label)
        ax.fill_between(steps, [min(by_step[s]) for s in steps],
                        [max(by_step[s]) for s in steps], color=color, alpha=0.2)
    ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="norm 1 (the GP target)")
    ax.set_yscale("log")
    ax.set_xlabel("generator step")
    ax.set_ylabel(r"$\|\nabla_{\hat x} D(\hat x)\|_2$ (mean over interpolates)")
    ax.set_title("Critic gradient norm at interpolates, per loss (median over seeds, "
                 "min-max band)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def samples_figure(client, picks: Sequence[tuple[str, str]]):
    """Side by side: the last sample plot (an MLflow artifact) of each (title, seed run id)."""
    images = []
    with tempfile.TemporaryDirectory() as tmp:
        for title, run_id in picks:
            plots = sorted(a.path for a in client.list_artifacts(run_id, "plots")
                           if a.path.rsplit("/", 1)[-1].startswith("samples_step"))
            if plots:
                local = client.download_artifacts(run_id, plots[-1], tmp)
                images.append((f"{title}\n({plots[-1].rsplit('/', 1)[-1]})",
                               plt.imread(local)))
    if not images:
        return None
    fig, axes = plt.subplots(1, len(images), figsize=(4.5 * len(images), 4.8), squeeze=False)
    for ax, (title, img) in zip(axes[0], images, strict=True):
        ax.imshow(img)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def compare_figure(rows: Sequence[tuple[str, SettingStats]]):
    """Best stable setting per experiment: success rate (Wilson 95%), median score and median
    FID (bootstrap 95% intervals)."""
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(13, 3.8))
    x = np.arange(len(rows))
    labels = [f"{name}\n{s.params.get('loss', '')}" for name, s in rows]
    rate = np.array([s.success_rate for _, s in rows])
    lo = np.array([s.success_wilson[0] for _, s in rows])
    hi = np.array([s.success_wilson[1] for _, s in rows])
    a1.errorbar(x, rate, yerr=[rate - lo, hi - rate], fmt="o", capsize=5)
    a1.set_ylim(-0.05, 1.05)
    a1.set_ylabel("success rate (Wilson 95%)")
    _median_bars(a2, x, [s.score_median for _, s in rows], [s.score_ci for _, s in rows])
    a2.set_ylabel("median seed_score (bootstrap 95%)")
    _median_bars(a3, x, [s.fid_median for _, s in rows], [s.fid_ci for _, s in rows])
    a3.set_ylabel("median FID (bootstrap 95%)")
    for ax in (a1, a2, a3):
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_xlim(-0.5, len(rows) - 0.5)
    fig.suptitle("Best stable setting of each experiment", fontsize=10)
    fig.tight_layout()
    return fig


def _median_bars(ax, x: np.ndarray, med: Sequence[float],
                 ci: Sequence[tuple[float, float]]) -> None:
    """Medians with their intervals; infinite ends (diverged seeds) are drawn to the top."""
    med = np.array(med, dtype=float)
    finite = np.isfinite(med)
    if not finite.any():
        return
    lo = np.array([c[0] for c in ci], dtype=float)
    hi = np.array([c[1] for c in ci], dtype=float)
    top = np.nanmax(np.where(np.isfinite(hi), hi, med)[finite]) * 1.5
    hi = np.where(np.isfinite(hi), hi, top)
    ax.errorbar(x[finite], med[finite], yerr=[(med - lo)[finite], (hi - med)[finite]],
                fmt="o", capsize=5)


# ---------------------------------------------------------------------------- optuna
def optuna_figures(study_path: Path, study_name: str, rep: Report) -> None:
    """Importances and parallel coordinates of the persisted study, or a note saying why not."""
    if not study_path.exists():
        rep.notes.append(f"No Optuna study at {study_path}: pass the --sweep-dir the sweep "
                         "used to get importances and parallel coordinates.")
        return
    import optuna
    from optuna.visualization import matplotlib as ovm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name,
                                  storage=optuna.storages.RDBStorage(f"sqlite:///{study_path}"))
    except KeyError:
        rep.notes.append(f"{study_path} holds no study named {study_name!r}.")
        return
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    n = len(complete)
    if n < MIN_COMPLETE_FOR_IMPORTANCE:
        rep.notes.append(f"Optuna figures skipped: the study has {n} complete trial(s) "
                         f"(trials stopped early by ASHA are PRUNED), fewer than "
                         f"{MIN_COMPLETE_FOR_IMPORTANCE}.")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        for name, plot in (("optuna_importances.png", ovm.plot_param_importances),
                           ("optuna_parallel.png", ovm.plot_parallel_coordinate)):
            try:
                ax = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as e:
                rep.notes.append(f"{name} skipped: Optuna could not compute it ({e}).")
                plt.close("all")
                continue
            fig = (ax if hasattr(ax, "savefig") else np.ravel(ax)[0].figure)
            fig.set_size_inches(7, 4)
            _save(fig, rep, name)


# ---------------------------------------------------------------------------- the report
def pick_failing(ordered: Sequence[SettingStats], exclude: Sequence[str] = ()
                 ) -> SettingStats | None:
    """The setting that shows failure: the most collapsed (not diverged) seeds, then the most
    failures, then the best-ranked (a near miss shows missing modes better than noise), among
    settings not in `exclude` if any fail there; None if every seed succeeded."""
    failing = [s for s in ordered if s.successes < s.n_seeds]
    failing = [s for s in failing if s.key not in exclude] or failing
    if not failing:
        return None
    rank = {s.key: i for i, s in enumerate(ordered)}
    return min(failing, key=lambda s: (-(s.n_seeds - s.successes - s.diverged),
                                       -(s.n_seeds - s.successes), rank[s.key]))


def write_report(client, records: SweepRecords, settings: Sequence[Setting],
                 ranked: Sequence[SettingStats], flagged: Sequence[SettingStats], out: Path,
                 *, study_path: Path) -> Report:
    """Write every figure and summary.md into `out`; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(out)
    ordered = [*ranked, *flagged]
    trial_of = {t.run_id: t for t in records.trials}
    params = [p for p in stability.varied_params(settings, records.sampled or None)
              if p != "loss"]

    # Stable regions.
    drawn = region_pairs(records.sampled)
    for x, y in REGION_PAIRS:
        if (x, y) not in drawn:
            missing = " or ".join(p for p in (x, y) if p not in records.sampled)
            rep.notes.append(f"Heatmap {x} x {y} skipped: the space does not sample {missing}.")
            continue
        grids = stability.region_grids_by_loss(settings, x, y)
        if not grids:
            rep.notes.append(f"Heatmap {x} x {y} skipped: "
                             f"{stability.region_skip_reason(settings, x, y)}.")
            continue
        for loss, grid in grids:  # a cell never pools seeds of different losses
            name = _save(heatmap_figure(grid, f"{records.experiment}, {loss}: {x} x {y}"),
                         rep, f"heatmap_{x}_x_{y}_{loss}.png")
            rep.sections.append(f"### {x} x {y}, loss {loss}\n\n![{name}]({name})\n\n"
                                f"{region_table(grid)}")

    # Coverage curves and samples: top settings and a collapsed one.
    picks = [(f"#{i} {s.label}", trial_of[s.key]) for i, s in enumerate(ranked[:TOP_CURVES], 1)]
    failing = pick_failing(ordered, exclude=[t.run_id for _, t in picks])
    if not picks and ordered:
        picks = [(f"{ordered[0].label} (flagged)", trial_of[ordered[0].key])]
    if failing is not None and failing.key not in {t.run_id for _, t in picks}:
        picks.append((f"{failing.label} ({failing.successes}/{failing.n_seeds} ok)",
                      trial_of[failing.key]))
    if failing is None:
        rep.notes.append("Every seed of every setting succeeded: no collapsed setting to show.")
    k_modes = max((s.num_modes for s in ordered if math.isfinite(s.num_modes)), default=math.nan)
    _save(coverage_figure(client, picks, k_modes, records.rule.min_coverage), rep,
          "coverage_vs_step.png")
    sample_picks = []
    if ordered:
        best = trial_of[ordered[0].key]
        ok = [s for s in best.seeds if stability.seed_succeeded(s.metrics)] or list(best.seeds)
        if ok:
            sample_picks.append((f"best: {ordered[0].label}, seed {ok[0].seed}", ok[0].run_id))
    if failing is not None:
        bad = [s for s in trial_of[failing.key].seeds
               if not stability.seed_succeeded(s.metrics)]
        # A collapse rather than a NaN, and the seed closest to success: missing modes show.
        bad.sort(key=lambda s: (s.metrics.get(names.DIVERGED, 0.0),
                                -s.metrics.get(names.MODES_HELD, 0.0),
                                s.metrics.get(names.SEED_SCORE, 1.0)))
        if bad:
            sample_picks.append((f"failing: {failing.label}, seed {bad[0].seed}",
                                 bad[0].run_id))
    fig = samples_figure(client, sample_picks)
    if fig is None:
        rep.notes.append("No sample plots among the seed runs' artifacts.")
    else:
        _save(fig, rep, "samples.png")

    # Gradient norm per loss: the best setting of each loss present.
    by_loss: dict[str, SettingStats] = {}
    for s in ordered:
        by_loss.setdefault(str(s.params.get("loss")), s)
    if len(by_loss) < 2:
        rep.notes.append(f"The sweep has one loss ({', '.join(by_loss) or 'none'}): the "
                         "gradient-norm figure shows only it.")
    _save(grad_norm_figure(client, [(f"{loss} ({s.label})", trial_of[s.key])
                                    for loss, s in sorted(by_loss.items())]),
          rep, "grad_norm_by_loss.png")

    optuna_figures(study_path, records.experiment, rep)
    (out / "summary.md").write_text(summary_markdown(records, ranked, flagged, params, rep),
                                    encoding="utf-8")
    rep.files.append("summary.md")
    return rep


def summary_markdown(records: SweepRecords, ranked: Sequence[SettingStats],
                     flagged: Sequence[SettingStats], params: Sequence[str], rep: Report) -> str:
    counts: dict[str, int] = {}
    for t in records.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    proto = records.trials[0].params if records.trials else {}
    confirmed = [s for s in [*ranked, *flagged] if s.source == "confirm"]
    lines = [f"# Stability report: sweep {records.experiment!r}", "",
             f"- Tracking: `{records.tracking_uri}`, parent run `{records.parent_run_id}`",
             f"- Trials: {len(records.trials)} ("
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")",
             f"- Protocol: dataset {proto.get('dataset')} (scale {proto.get('dataset_scale')}), "
             f"{proto.get('steps')} steps, FID and coverage on {proto.get('eval_samples')} "
             "generated samples (FID N = that)",
             ""]
    if confirmed:
        lines += [f"Rows marked *confirm* use fresh seeds re-run by `sweeper stable --confirm` "
                  f"({len(confirmed)} setting(s)); they replace the sweep's estimates.", ""]
    lines += ["## Ranked settings", "",
              stats_table(ranked, params) if ranked else "_No setting qualifies for ranking._",
              ""]
    if flagged:
        lines += ["## Flagged, not ranked", "", flagged_table(flagged, params), ""]
    lines += ["## Stable regions", "", "\n\n".join(rep.sections) or "_No heatmap: see notes._",
              ""]
    for title, name in (("Mode coverage vs step", "coverage_vs_step.png"),
                        ("Samples: best vs collapsed", "samples.png"),
                        ("Critic gradient norm by loss", "grad_norm_by_loss.png"),
                        ("Optuna parameter importances", "optuna_importances.png"),
                        ("Optuna parallel coordinates", "optuna_parallel.png")):
        if name in rep.files:
            lines += [f"## {title}", "", f"![{name}]({name})", ""]
    if rep.notes:
        lines += ["## Notes", "", *(f"- {n}" for n in rep.notes), ""]
    objective = ranked[0].objective if ranked else records.objective
    lines += ["## Definitions", "",
              stability.definitions_markdown(rule=records.rule, objective=objective), ""]
    return "\n".join(lines)
