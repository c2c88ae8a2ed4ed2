"""`sweeper stable`, `sweeper compare`, `sweeper report`: what a finished sweep says.

Listed in `sweeper.cli.COMMANDS` with the other commands. The
definitions of stability and the ranking rule are in `sweeper.analyse.stability`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from sweeper.analyse import stability
from sweeper.analyse.objective import check_objective
from sweeper.analyse.stability import Setting, SettingStats
from sweeper.cli.options import SMOKE, check_seeds, tracking_uri_option
from sweeper.commands import sweeper_cmd
from sweeper.errors import UserError
from sweeper.paths import check_dir_writable, check_file_writable
from sweeper.track import store
from sweeper.track.reader import SweepRecords, load_sweep, require_finished, settings

# Fields that define an experiment's evaluation protocol: numbers measured under different
# values are not comparable (FID is biased in 1/N; a longer budget is a different question).
PROTOCOL_FIELDS = ("dataset", "dataset_scale", "eval_samples", "steps")
# Not part of an exported setting: the seed is the user's choice, the device the machine's.
NOT_EXPORTED = ("seed", "device")
# `--smoke-test` caps the confirm re-runs at this many settings and seeds.
SMOKE_CONFIRM = {"top": 1, "seeds": 2}

_uri_option = tracking_uri_option("MLflow tracking URI the sweep logged to.")
_objective_option = click.option(
    "--objective", default=None, metavar="[quality|fid]",
    help="Re-rank by this tie-breaker after the success rate, without retraining: quality "
    "(median seed_score) or fid (median FID) [default: the sweep's own].")
_min_seeds_option = click.option(
    "--min-seeds", type=int, default=stability.MIN_SEEDS, show_default=True,
    help="Settings with fewer seeds are flagged and listed after the ranked ones.")


@dataclass
class Analysis:
    records: SweepRecords
    settings: list[Setting]
    ranked: list[SettingStats]
    flagged: list[SettingStats]
    params: list[str]  # varied parameters (besides loss), shown in tables
    min_seeds: int
    objective: str  # the tie-breaker the settings are ranked by

    @property
    def ranking(self) -> str:
        tie = "median FID" if self.objective == "fid" else "median seed_score"
        return f"success-rate Wilson 95% lower bound desc, then {tie} asc"

    def rule_text(self) -> str:
        """The recorded rule as it applies to the sweep's data (modes, or coverage and the
        features it was measured on)."""
        from trainers.data import describe_rule

        first = self.settings[0].params if self.settings else {}
        return describe_rule(self.records.rule, first.get("dataset"),
                             str(first.get("fid_backend", "auto")))

    def preamble(self) -> list[str]:
        """What a reader must know before the table: the rule, the objective, old seeds."""
        r = self.records
        lines = [f"A seed succeeds with {self.rule_text()} (the rule the sweep recorded)."]
        models = sorted({str(s.params.get("model", "auto")) for s in self.settings})
        if models != ["auto"]:
            lines.append(f"Networks (model): {', '.join(models)}.")
        if self.objective != r.objective:
            lines.append(f"Re-ranked with --objective {self.objective}; the sweep itself "
                         f"optimised {r.objective}.")
        old = stability.missing_quality(self.settings)
        if old:
            lines.append(f"{old} seed(s) carry no seed_success (logged before the quality "
                         "rule existed) and count as failures; re-train them with "
                         "`sweeper stable --confirm N` to judge them.")
        return lines

    @property
    def best(self) -> SettingStats:
        if not self.ranked:
            raise UserError(f"no setting of {self.records.experiment!r} qualifies for ranking "
                            f"({len(self.flagged)} flagged: "
                            f"{'; '.join(sorted({', '.join(s.flags) for s in self.flagged}))}); "
                            "resume the sweep, or run it with more --seeds")
        return self.ranked[0]


def analyse(uri: str, experiment: str, min_seeds: int = stability.MIN_SEEDS,
            objective: str | None = None) -> Analysis:
    """Load the sweep and rank its settings (confirmed numbers replace sweep estimates) by
    `objective`, or by the sweep's own objective when None."""
    if min_seeds < 1:
        raise UserError(f"--min-seeds must be at least 1, got {min_seeds}")
    if objective is not None:
        check_objective(objective)
    records = load_sweep(uri, experiment)
    require_finished(records)
    objective = objective or records.objective
    sets = settings(records)
    ranked, flagged = stability.rank(
        stability.setting_stats(s, min_seeds=min_seeds, objective=objective) for s in sets)
    params = [p for p in stability.varied_params(sets, records.sampled or None) if p != "loss"]
    return Analysis(records, sets, ranked, flagged, params, min_seeds, objective)


def _regions(a: Analysis) -> list:
    """(loss, grid) per region pair and loss."""
    from sweeper.analyse.report import region_pairs

    return [lg for x, y in region_pairs(a.records.sampled)
            for lg in stability.region_grids_by_loss(a.settings, x, y)]


# ---------------------------------------------------------------------------- stable
@click.command()
@click.option("--experiment", required=True, help="Sweep name (MLflow experiment).")
@_uri_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False),
              help="Write the top setting as a YAML config for `sweeper train --config`.")
@click.option("--confirm", "confirm_seeds", type=int, default=0, show_default=True,
              help="Re-train the top settings with this many fresh seeds (in this process); "
              "their numbers replace the sweep's estimates.")
@click.option("--top", type=int, default=3, show_default=True,
              help="How many top settings --confirm re-trains.")
@_min_seeds_option
@_objective_option
@click.option("--smoke-test", is_flag=True, help="With --confirm: 1 setting, at most 2 seeds, "
              "tiny budget; checks the pipeline and replaces no estimate.")
@click.option("--wide", is_flag=True, help="Every column (intervals, FID range, mode KL), "
              "however wide; by default the table fits 160 characters.")
def stable(experiment, tracking_uri, as_json, export_path, confirm_seeds, top, min_seeds,
           objective, smoke_test, wide) -> None:
    """Settings ranked by how stably they train across seeds (see docs/sweeps.md: Stability)."""
    if confirm_seeds < 0 or top < 1:
        raise UserError(f"--confirm must be >= 0 and --top >= 1, got {confirm_seeds} and {top}")
    if confirm_seeds:
        check_seeds("--confirm", confirm_seeds)
    if export_path:  # before any confirm run trains
        check_file_writable(export_path, "--export")
    a = analyse(tracking_uri, experiment, min_seeds, objective)
    note = ""
    if confirm_seeds:
        from sweeper.analyse.confirm import confirm_settings

        if smoke_test:
            top, confirm_seeds = SMOKE_CONFIRM["top"], min(confirm_seeds, SMOKE_CONFIRM["seeds"])
        targets = (a.ranked or a.flagged)[:top]
        click.echo(f"confirming {len(targets)} setting(s) with {confirm_seeds} fresh seeds"
                   f"{' (smoke test)' if smoke_test else ''}...", err=True)
        confirm_settings(a.records, [s.key for s in targets], confirm_seeds,
                         smoke=SMOKE if smoke_test else None)
        a = analyse(a.records.tracking_uri, experiment, min_seeds, objective)
        note = ("Smoke-test confirm runs were logged (tag gan_sweeper.smoke=1); they replace "
                "no estimate. " if smoke_test else
                f"Confirmed: {len(targets)} setting(s) re-trained with {confirm_seeds} fresh "
                "seeds. ")
    if any(s.source == "confirm" for s in [*a.ranked, *a.flagged]):
        note += ("Rows whose seeds come from 'confirm' show numbers from fresh seeds (all "
                 "confirm runs so far), replacing the sweep's estimates.")
    note = note.strip()
    if export_path:
        write_export(a, Path(export_path))
    if as_json:
        click.echo(json.dumps(stable_json(a, note), sort_keys=True))
        return
    from sweeper.analyse.report import compact_table, flagged_table, region_table, stats_table

    click.echo(f"Stable settings of sweep {experiment!r}: ranked by {a.ranking} "
               "(definitions: docs/sweeps.md, Stability).")
    for line in a.preamble():
        click.echo(line)
    if note:
        click.echo(note)
    table = stats_table if wide else compact_table
    click.echo(table(a.ranked, a.params) if a.ranked else "No setting qualifies.")
    if a.flagged:
        click.echo(f"\nFlagged, not ranked (fewer than {min_seeds} seeds, or not at full "
                   "budget):")
        click.echo(flagged_table(a.flagged, a.params, compact=not wide))
    for loss, grid in _regions(a):
        click.echo(f"\nStable region {grid.x.name} x {grid.y.name}, loss {loss} "
                   "(successes/seeds pooled per cell):")
        click.echo(region_table(grid))
    click.echo(store.where_to_look(a.records.tracking_uri, a.records.experiment_id))
    if export_path:
        click.echo(f"\nwrote {export_path}: setting {a.best.label}; train it with "
                   f"`{sweeper_cmd('train', '--config', export_path)}`")
    for line in next_steps(a, experiment, confirmed=bool(confirm_seeds), exported=export_path):
        click.echo(line)


def next_steps(a: Analysis, experiment: str, *, confirmed: bool,
               exported: str | None) -> list[str]:
    """What to run next, each command as it runs from here (sweeper/commands.py)."""
    if not (a.ranked or a.flagged):
        return []
    find = ["--experiment", experiment, *store.tracking_args(a.records.tracking_uri)]
    lines = ["\nNext:"]
    if not confirmed:
        lines.append(f"  re-train the top 3 on 10 fresh seeds (their numbers replace these "
                     f"estimates): {sweeper_cmd('stable', *find, '--confirm', '10')}")
    if not exported and a.ranked:  # --export needs a ranked setting
        lines.append(f"  the best setting as a config for `train`: "
                     f"{sweeper_cmd('stable', *find, '--export', 'best.yaml')}")
    lines.append(f"  a report with plots: {sweeper_cmd('report', *find)}")
    return lines


def stable_json(a: Analysis, note: str) -> dict[str, Any]:
    return {"experiment": a.records.experiment, "tracking_uri": a.records.tracking_uri,
            "ranking": a.ranking, "objective": a.objective,
            "sweep_objective": a.records.objective, "rule": a.records.rule.to_dict(),
            "preamble": a.preamble(), "min_seeds": a.min_seeds,
            "note": note, "params": a.params,
            "ranked": [s.to_dict() for s in a.ranked],
            "flagged": [s.to_dict() for s in a.flagged],
            "regions": [{"loss": loss, **g.to_dict()} for loss, g in _regions(a)]}


def write_export(a: Analysis, path: Path) -> None:
    """The top setting's full TrialConfig, minus seed and device, as YAML."""
    best = a.best
    values = {k: v for k, v in a.records.trial(best.key).params.items() if k not in NOT_EXPORTED}
    # What a reader of the file needs to trust it: the rule, the budget, and whether the
    # success was confirmed on seeds the sweep never saw.
    confirmed = ("confirmed on fresh seeds" if best.source == "confirm" else
                 "on the sweep's own seeds, not confirmed (`sweeper stable --confirm 10`)")
    header = (f"# sweeper stable --export: sweep {a.records.experiment!r}, setting {best.label}"
              f", ranked by {a.objective}\n# rule: {a.rule_text()}\n"
              f"# budget: {values.get('steps', '?')} generator steps, batch "
              f"{values.get('batch_size', '?')}\n# success {best.successes}/{best.n_seeds} "
              f"{confirmed} (Wilson 95% lower bound {best.success_lower:.2f}), mean HQ "
              f"{best.hq_fraction_mean:.3f}, median seed_score {best.score_median:.3f}, median "
              f"FID {best.fid_median:.4g}\n")
    try:
        path.write_text(header + yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None


# ---------------------------------------------------------------------------- compare
@click.command()
@click.option("--experiment", "experiments", multiple=True, required=True,
              help="A sweep to compare (give two or more).")
@_uri_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
@click.option("--out", default="compare", show_default=True, type=click.Path(file_okay=False),
              help="Folder for compare.png.")
@_min_seeds_option
@click.option("--objective", default="quality", show_default=True, metavar="[quality|fid]",
              help="Tie-breaker after the success rate, the same for every sweep: median "
              "seed_score (quality) or median FID.")
def compare(experiments, tracking_uri, as_json, out, min_seeds, objective) -> None:
    """The best stable setting of each sweep side by side, under one protocol."""
    names = list(dict.fromkeys(experiments))
    if len(names) < 2:
        raise UserError("compare needs at least two different --experiment names")
    check_objective(objective)
    rows = [(n, analyse(tracking_uri, n, min_seeds, objective)) for n in names]
    best = [(n, a.best) for n, a in rows]
    ref_name, ref = best[0]
    for n, b in best[1:]:
        for f in PROTOCOL_FIELDS:
            if ref.params.get(f) != b.params.get(f):
                raise UserError(f"cannot compare {ref_name!r} and {n!r}: their protocols differ "
                                f"in {f} ({ref.params.get(f)} vs {b.params.get(f)}); compare "
                                f"sweeps with the same {', '.join(PROTOCOL_FIELDS)}")
    from sweeper.analyse.report import compare_figure, stats_table

    out_dir = check_dir_writable(out, "--out")
    fig = compare_figure(best)
    fig.savefig(out_dir / "compare.png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    protocol = {f: ref.params.get(f) for f in PROTOCOL_FIELDS}
    rules = {n: a.records.rule.to_dict() for n, a in rows}
    if as_json:
        click.echo(json.dumps({"protocol": protocol, "figure": str(out_dir / "compare.png"),
                               "ranking": rows[0][1].ranking, "rules": rules,
                               "best": {n: b.to_dict() for n, b in best}}, sort_keys=True))
        return
    click.echo("Best stable setting of each sweep (protocol: " + ", ".join(
        f"{k} {v}" for k, v in protocol.items()) + f"; each ranked by {rows[0][1].ranking}):")
    if len({json.dumps(r, sort_keys=True) for r in rules.values()}) > 1:
        click.echo("Warning: the sweeps judged success by different rules: " + "; ".join(
            f"{n}: {a.records.rule.describe()}" for n, a in rows))
    params = sorted({p for _, a in rows for p in a.params})
    click.echo(stats_table([b for _, b in best], params, first=("sweep", names)))
    click.echo(f"\nfigure: {out_dir / 'compare.png'}")


# ---------------------------------------------------------------------------- report
@click.command()
@click.option("--experiment", required=True, help="Sweep name (MLflow experiment).")
@click.option("--out", default="report", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the PNGs and summary.md.")
@_uri_option
@click.option("--sweep-dir", default="sweeps", show_default=True,
              type=click.Path(file_okay=False), help="Where the sweep's Optuna study lives.")
@_min_seeds_option
@_objective_option
def report(experiment, out, tracking_uri, sweep_dir, min_seeds, objective) -> None:
    """PNG figures + summary.md in --out, also logged to the sweep's parent run (report/)."""
    from sweeper.analyse.report import write_report
    from sweeper.tune.driver import sweep_path

    a = analyse(tracking_uri, experiment, min_seeds, objective)
    client = store.client(a.records.tracking_uri)
    out_dir = check_dir_writable(out, "--out")
    study = sweep_path(Path(sweep_dir).resolve(), experiment) / "optuna.db"
    rep = write_report(client, a.records, a.settings, a.ranked, a.flagged, out_dir,
                       study_path=study)
    if a.records.parent_run_id:
        client.log_artifacts(a.records.parent_run_id, str(out_dir), "report")
        where = f"; logged to run {a.records.parent_run_id} under report/"
    else:
        where = "; no sweep parent run to log to"
    click.echo(f"wrote {len(rep.files)} files to {out_dir}{where}:")
    for f in rep.files:
        click.echo(f"  {out_dir / f}")
    for n in rep.notes:
        click.echo(f"note: {n}")
    click.echo(store.where_to_look(a.records.tracking_uri, a.records.experiment_id))
