"""sweeper.analyse.report: the markdown tables (stats, flagged, region) checked cell by cell
against closed-form numbers, the figures' content (compare, coverage, gradient norm), the
choice of the collapsed setting to show, the Optuna notes, and `write_report` on a real
MLflow store (valid PNGs, summary.md with the tables and notes).

Settings are hand-made with known per-seed metrics; the store is built as the product writes
it, with the helpers of tests/sweeper/track/test_reader.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from sweeper.analyse import report, stability
from sweeper.analyse.stability import Setting
from sweeper.track import reader
from tests.sweeper.track.test_reader import SWEEP, TINY, add_trial, final, sweep_store
from trainers.config import make_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Per-seed metrics with known summaries (see each test for the numbers they give).
A_SEEDS = [final(8, fid=0.5, score=0.1, hq=0.6, kl=0.01),
           final(8, fid=1.5, score=0.2, hq=0.5, kl=0.02),
           final(5, fid=2.5, score=0.6, hq=0.1, kl=0.9)]  # 5 of 8 modes held: a failure
B_SEEDS = [final(8, fid=0.3, score=0.05, hq=0.7, kl=0.03)] * 2 + [final(diverged=True)]


def params(**values) -> dict:
    """A full TrialConfig dict: every field is there, applicable to the loss or not."""
    return make_config({**TINY, **values}).to_dict()


def setting(label: str, seeds, *, complete: bool = True, source: str = "sweep",
            **values) -> Setting:
    return Setting(label, label, params(**values), seeds, complete=complete, source=source,
                   seed_ids=list(range(len(seeds))))


def stats(*args, **kwargs) -> stability.SettingStats:
    return stability.setting_stats(setting(*args, **kwargs))


def rows(table: str) -> list[dict[str, str]]:
    """A markdown table's body rows as {header: cell}."""
    lines = table.splitlines()
    head = [c.strip() for c in lines[0].strip("|").split(" | ")]
    assert set(lines[1]) == {"|", "-"}
    out = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().removeprefix("| ").removesuffix(" |")
                 .split(" | ")]
        assert len(cells) == len(head), line
        out.append(dict(zip(head, cells, strict=True)))
    return out


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval, written out independently of the product."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and plt.imread(path).ndim == 3


# ------------------------------------------------------------------------------ tables
def test_stats_table_cells_match_closed_form_numbers():
    a = stats("A", A_SEEDS, loss="wgan-gp", gp_lambda=10.0, n_critic=5)
    b = stats("B", B_SEEDS, loss="wgan-clip", clip_value=0.05, n_critic=2)
    table = report.stats_table([a, b], ["clip_value", "gp_lambda", "n_critic", "lr_x"])
    ra, rb = rows(table)
    lo, hi = wilson(2, 3)
    assert (f"{lo:.2f}", f"{hi:.2f}") == ("0.21", "0.94")
    assert ra == {
        "#": "1", "trial": "A", "seeds from": "sweep", "loss": "wgan-gp",
        "clip_value": "-",  # a wgan-gp config carries clip_value, but it does not apply
        "gp_lambda": "10", "n_critic": "5", "lr_x": "-",  # a param the setting lacks
        "success": "2/3", "Wilson 95%": "[0.21-0.94]",
        # Success indicators 1, 1, 0: an all-failure resample has p = 1/27 > 2.5%.
        "bootstrap 95%": "[0.00-1.00]",
        "HQ mean": "0.400",  # (0.6 + 0.5 + 0.1) / 3
        # Three distinct values: each extreme is a resampled median with p = 7/27 > 2.5%.
        "median score [95% CI]": "0.200 [0.100-0.600]",
        "median FID [95% CI]": "1.5 [0.5-2.5]", "FID min-max": "0.5-2.5",
        "mode KL median [min-max]": "0.02 [0.01-0.9]",
        "modes held mean (min)": "7.0 (5)/8",  # (8 + 8 + 5) / 3
    }
    # A diverged seed counts as FID inf and score 1; it has no mode KL.
    assert rb == {
        "#": "2", "trial": "B", "seeds from": "sweep", "loss": "wgan-clip",
        "clip_value": "0.05", "gp_lambda": "-", "n_critic": "2", "lr_x": "-",
        "success": "2/3", "Wilson 95%": "[0.21-0.94]", "bootstrap 95%": "[0.00-1.00]",
        "HQ mean": "0.467",  # (0.7 + 0.7 + 0) / 3
        "median score [95% CI]": "0.050 [0.050-1.000]",
        "median FID [95% CI]": "0.3 [0.3-inf]", "FID min-max": "0.3-inf",
        "mode KL median [min-max]": "0.03 [0.03-0.03]",
        "modes held mean (min)": "5.3 (0)/8",
    }


def test_stats_table_marks_confirmed_rows_and_takes_a_custom_first_column():
    c = stats("C", [final()] * 3, source="confirm")
    e = stats("E", [{}, {}, {}])  # three seeds that measured nothing
    table = report.stats_table([c, e], [], first=("pick", ["x", "y"]))
    assert table.splitlines()[0].startswith("| pick | trial | seeds from | loss | success |")
    rc, re_ = rows(table)
    assert (rc["pick"], rc["seeds from"], rc["success"]) == ("x", "confirm", "3/3")
    lo, _ = wilson(3, 3)
    assert rc["Wilson 95%"] == f"[{lo:.2f}-1.00]" == "[0.44-1.00]"
    assert rc["bootstrap 95%"] == "[1.00-1.00]"
    assert (re_["pick"], re_["success"], re_["seeds from"]) == ("y", "0/3", "sweep")
    _, hi = wilson(0, 3)
    assert re_["Wilson 95%"] == f"[0.00-{hi:.2f}]" == "[0.00-0.56]"
    assert re_["median FID [95% CI]"] == "inf [inf-inf]"
    assert re_["median score [95% CI]"] == "1.000 [1.000-1.000]"


def test_flagged_table_leads_with_the_flags():
    few = stats("few", [final()] * 2)
    partial = stats("part", [final()] * 3, complete=False)
    both = stats("both", [final()], complete=False)
    got = rows(report.flagged_table([few, partial, both], ["n_critic"]))
    assert [(r["flag"], r["trial"], r["n_critic"]) for r in got] == [
        ("few seeds", "few", "5"), ("not at full budget", "part", "5"),
        ("few seeds, not at full budget", "both", "5")]
    assert [r["success"] for r in got] == ["2/2", "3/3", "1/1"]


def region_settings() -> list[Setting]:
    """wgan-gp settings on gp_lambda {1, 10} x n_critic {1, 3}; the (10, 3) cell is empty,
    the (1, 3) cell pools two settings. A wgan-clip setting (no gp_lambda) and one not at
    full budget are left out of the grid."""
    gp = {"loss": "wgan-gp"}
    return [
        setting("a", A_SEEDS, gp_lambda=1.0, n_critic=1, **gp),
        setting("b", [final(fid=0.2, score=0.05, hq=0.8)] * 3, gp_lambda=10.0, n_critic=1,
                **gp),
        setting("c", [final(fid=1.0, score=0.3, hq=0.5), final(4, fid=3.0, score=0.5, hq=0.3)],
                gp_lambda=1.0, n_critic=3, **gp),
        setting("d", [final(diverged=True), final(2, fid=5.0, score=0.9, hq=0.2)],
                gp_lambda=1.0, n_critic=3, **gp),
        setting("clip", [final()] * 3, loss="wgan-clip", n_critic=3),
        setting("short", [final()] * 3, complete=False, gp_lambda=10.0, n_critic=3, **gp),
    ]


def test_region_table_pools_the_seeds_of_each_cell():
    grid = stability.region_grid(region_settings(), "gp_lambda", "n_critic")
    table = report.region_table(grid)
    assert table.splitlines()[0] == "| n_critic \\ gp_lambda | 1 | 10 |"
    got = {r["n_critic \\ gp_lambda"]: r for r in rows(table)}
    assert got["1"]["1"] == "2/3 (67%), HQ 0.40, score 0.200, FID 1.5"
    assert got["1"]["10"] == "3/3 (100%), HQ 0.80, score 0.050, FID 0.2"
    # Seeds of c and d: successes 1/4; HQ (0.5 + 0.3 + 0 + 0.2) / 4; median score of
    # 0.3, 0.5, 0.9, 1 (diverged); median FID of 1, 3, 5, inf.
    assert got["3"]["1"] == "1/4 (25%), HQ 0.25, score 0.700, FID 4"
    assert got["3"]["10"] == "-"  # only the setting not at full budget was there


def test_region_table_says_when_a_param_is_binned_by_decade():
    sets = [setting(f"s{j}", [final()] * 3, lr_d=lr, n_critic=nc)
            for j, (lr, nc) in enumerate([(1e-4, 1), (5e-4, 2), (3e-3, 1)])]
    table = report.region_table(stability.region_grid(sets, "lr_d", "n_critic"))
    assert table.splitlines()[0] == "| n_critic \\ lr_d (log bins) | 0.0001-0.001 | 0.001-0.01 |"
    got = {r["n_critic \\ lr_d (log bins)"]: r for r in rows(table)}
    assert got["1"]["0.0001-0.001"].startswith("3/3 (100%)")
    assert got["1"]["0.001-0.01"].startswith("3/3 (100%)")
    assert got["2"]["0.0001-0.001"].startswith("3/3 (100%)") and got["2"]["0.001-0.01"] == "-"


def test_fmt_of_missing_nan_inf_and_numbers():
    assert [report.fmt(v) for v in (None, math.nan, math.inf, 0.123456, 3, "x")] == [
        "-", "-", "inf", "0.123", "3", "x"]


# ------------------------------------------------------------------------------ figures
def test_compare_figure_draws_rates_medians_and_intervals(tmp_path):
    a = stats("A", A_SEEDS, loss="wgan-gp")
    b = stats("B", B_SEEDS, loss="wgan-clip")
    fig = report.compare_figure([("sweep a", a), ("sweep b", b)])
    rate_ax, score_ax, fid_ax = fig.axes
    assert [t.get_text() for t in rate_ax.get_xticklabels()] == ["sweep a\nwgan-gp",
                                                                 "sweep b\nwgan-clip"]

    def drawn(ax):
        """(medians or rates, lower ends, upper ends) as the error bars show them."""
        line, (low, high), _ = ax.containers[0]
        return [list(map(float, x.get_ydata())) for x in (line, low, high)]

    lo, hi = wilson(2, 3)
    for got, want in zip(drawn(rate_ax), ([2 / 3] * 2, [lo] * 2, [hi] * 2), strict=True):
        assert got == pytest.approx(want)
    assert drawn(score_ax) == [[0.2, 0.05], [0.1, 0.05], [0.6, 1.0]]
    # B's FID interval reaches inf: its bar is drawn to 1.5 x the highest finite end (2.5).
    assert drawn(fid_ax) == [[1.5, 0.3], [0.5, 0.3], [2.5, 3.75]]
    path = tmp_path / "compare.png"
    fig.savefig(path, dpi=40)
    plt.close(fig)
    assert is_png(path)


def test_compare_figure_survives_settings_without_any_finite_median():
    dead = stats("dead", [final(diverged=True)] * 3)
    fig = report.compare_figure([("x", dead)])
    assert len(fig.axes[2].containers) == 0  # no FID to draw, and no error
    assert list(fig.axes[0].containers[0][0].get_ydata()) == [0.0]
    plt.close(fig)


# ------------------------------------------------------------------------------ picks
def test_pick_failing_prefers_collapse_over_divergence_then_more_failures():
    ok = stats("ok", [final()] * 3)
    diverged = stats("div", [final(diverged=True)] * 3)  # nothing collapsed
    one = stats("one", [final(), final(), final(4)])
    two = stats("two", [final(), final(4), final(3)])
    assert report.pick_failing([ok]) is None
    assert report.pick_failing([ok, diverged, one, two]).label == "two"
    assert report.pick_failing([ok, one, diverged]).label == "one"
    # Outside the excluded settings when one fails there, else among them.
    assert report.pick_failing([two, one], exclude=["two"]).label == "one"
    assert report.pick_failing([two, ok], exclude=["two"]).label == "two"


# ------------------------------------------------------------------------------ optuna
def test_optuna_notes_for_a_missing_study_a_wrong_name_and_too_few_trials(tmp_path):
    import optuna

    rep = report.Report(tmp_path)
    report.optuna_figures(tmp_path / "none.db", "s", rep)
    path = tmp_path / "optuna.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{path}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    report.optuna_figures(path, "other", rep)
    report.optuna_figures(path, "s", rep)
    assert rep.files == []
    assert rep.notes[0].startswith(f"No Optuna study at {tmp_path / 'none.db'}")
    assert rep.notes[1] == f"{path} holds no study named 'other'."
    assert rep.notes[2].startswith("Optuna figures skipped: the study has 2 complete trial(s)")
    assert f"fewer than {report.MIN_COMPLETE_FOR_IMPORTANCE}" in rep.notes[2]


# ------------------------------------------------------------------------------ a store
SPACE = {"loss": {"choice": ["wgan-gp", "wgan-clip"]},
         "gp_lambda": {"log_uniform": [0.1, 100], "when": {"loss": "wgan-gp"}},
         "clip_value": {"log_uniform": [0.001, 1], "when": {"loss": "wgan-clip"}},
         "n_critic": {"int": [1, 3]}}
# The wgan-clip trial keeps wgan-gp's learning rates: the sweep did not sample them.
CLIP = {"loss": "wgan-clip", "clip_value": 0.05, "n_critic": 2, "lr_d": 1e-4, "lr_g": 1e-4}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A sweep store like region_settings(), plus a wgan-clip trial; its analysis as the CLI
    does it (settings, then ranked and flagged stats)."""
    s = sweep_store(tmp_path_factory.mktemp("report"), tmp_path_factory, sampled=SPACE)
    gp = {"loss": "wgan-gp"}
    add_trial(s, "t1", A_SEEDS, values={"gp_lambda": 1.0, "n_critic": 1, **gp}, samples=True)
    add_trial(s, "t2", [final(fid=0.2, score=0.05, hq=0.8, grad=0.5)] * 3,
              values={"gp_lambda": 10.0, "n_critic": 1, **gp}, samples=True)
    add_trial(s, "t3", [final(fid=1.0, score=0.3, hq=0.5), final(4, fid=3.0, score=0.5, hq=0.3)],
              values={"gp_lambda": 1.0, "n_critic": 3, **gp})
    add_trial(s, "t4", [final(diverged=True), final(2, fid=5.0, score=0.9, hq=0.2)],
              values={"gp_lambda": 1.0, "n_critic": 3, **gp}, samples=True)
    add_trial(s, "t5", B_SEEDS, values=CLIP)
    records = reader.load_sweep(s.uri, SWEEP)
    sets = reader.settings(records)
    ranked, flagged = stability.rank(stability.setting_stats(x, objective=records.objective)
                                     for x in sets)
    return s, records, sets, ranked, flagged


def test_the_analysis_of_the_store_ranks_as_expected(swept):
    _, records, _, ranked, flagged = swept
    assert records.objective == "quality"
    # 3/3 first; then 2/3 and 2/3 by median score (0.05 before 0.2); 2-seed trials flagged.
    assert [x.label for x in ranked] == ["t2", "t5", "t1"]
    assert [(x.label, x.flags) for x in flagged] == [("t3", ("few seeds",)),
                                                     ("t4", ("few seeds",))]


def test_coverage_figure_draws_each_seeds_modes_held_history(swept):
    s, records, _, _, _ = swept
    t1 = next(t for t in records.trials if t.trial_id == "t1")
    fig = report.coverage_figure(s.client, [("#1 t1", t1)], 8.0, 0.9)
    ax = fig.axes[0]
    curves = [(list(x.get_xdata()), list(x.get_ydata())) for x in ax.lines[:3]]
    # One line per seed: held/2 at step 2, held at step 4 (as the seed runs logged them).
    assert curves == [([2, 4], [4.0, 8.0]), ([2, 4], [4.0, 8.0]), ([2, 4], [2.5, 5.0])]
    assert list(ax.lines[3].get_ydata()) == pytest.approx([0.9 * 8] * 2)  # the success line
    assert ax.get_legend().get_texts()[0].get_text() == "#1 t1"
    plt.close(fig)


def test_grad_norm_figure_draws_the_median_over_seeds_per_loss(swept):
    s, records, _, _, _ = swept
    trial = {t.trial_id: t for t in records.trials}
    fig = report.grad_norm_figure(s.client, [("gp", trial["t2"]), ("clip", trial["t5"])])
    ax = fig.axes[0]
    medians = [(list(x.get_xdata()), list(x.get_ydata())) for x in ax.lines[:2]]
    # t2's seeds logged 1.0 at step 2 and 0.5 at step 4; t5's two live seeds 2.0 and 1.0,
    # its diverged seed none.
    assert medians == [([2, 4], [1.0, 0.5]), ([2, 4], [2.0, 1.0])]
    assert [x.get_text() for x in ax.get_legend().get_texts()][:2] == ["gp", "clip"]
    assert ax.get_yscale() == "log"
    plt.close(fig)


def test_samples_figure_is_none_without_sample_plots(swept):
    s, records, _, _, _ = swept
    t5 = next(t for t in records.trials if t.trial_id == "t5")
    assert report.samples_figure(s.client, [("clip", t5.seeds[0].run_id)]) is None


def test_write_report_writes_valid_pngs_and_a_summary_with_the_tables(swept, tmp_path):
    s, records, sets, ranked, flagged = swept
    out = tmp_path / "report"
    rep = report.write_report(s.client, records, sets, ranked, flagged, out,
                              study_path=tmp_path / "no-study.db")
    assert rep.out == out
    assert rep.files == ["heatmap_gp_lambda_x_n_critic_wgan-gp.png", "coverage_vs_step.png",
                         "samples.png", "grad_norm_by_loss.png", "summary.md"]
    assert sorted(p.name for p in out.iterdir()) == sorted(rep.files)
    for name in rep.files[:-1]:
        assert is_png(out / name), name
    # No heatmap over a param the space does not sample, and a note that says so.
    assert rep.notes == [
        "Heatmap penalty_weight x n_critic skipped: the space does not sample penalty_weight.",
        "Heatmap lr_d x n_critic skipped: the space does not sample lr_d.",
        "Heatmap lr_g x n_critic skipped: the space does not sample lr_g.",
        f"No Optuna study at {tmp_path / 'no-study.db'}: pass the --sweep-dir the sweep used "
        "to get importances and parallel coordinates."]

    md = (out / "summary.md").read_text(encoding="utf-8")
    params = ["gp_lambda", "n_critic"]  # sampled and varied where they apply; not loss
    assert md.startswith(f"# Stability report: sweep {SWEEP!r}\n")
    assert f"- Tracking: `{s.uri}`, parent run `{s.parent_run_id}`" in md
    assert "- Trials: 5 (5 finished)" in md
    assert ("- Protocol: dataset ring8 (scale 1.0), 4 steps, FID and coverage on 200 "
            "generated samples") in md
    assert "## Ranked settings\n\n" + report.stats_table(ranked, params) in md
    assert "## Flagged, not ranked\n\n" + report.flagged_table(flagged, params) in md
    # One grid per loss: a cell never pools seeds of different losses.
    (loss, grid), = stability.region_grids_by_loss(sets, "gp_lambda", "n_critic")
    assert loss == "wgan-gp"
    assert ("### gp_lambda x n_critic, loss wgan-gp\n\n"
            "![heatmap_gp_lambda_x_n_critic_wgan-gp.png]"
            "(heatmap_gp_lambda_x_n_critic_wgan-gp.png)\n\n" + report.region_table(grid)) in md
    for name in rep.files[1:-1]:
        assert f"![{name}]({name})" in md
    assert "optuna_importances.png" not in md and "## Notes" in md
    assert "## Definitions" in md and "confirm" not in md.split("## Definitions")[0]
    # The tables in the summary: the wgan-clip row shows "-" for gp_lambda.
    t5 = next(r for r in rows(report.stats_table(ranked, params)) if r["trial"] == "t5")
    assert (t5["#"], t5["loss"], t5["gp_lambda"], t5["n_critic"]) == ("2", "wgan-clip", "-",
                                                                       "2")


def test_no_heatmap_over_a_param_the_sweep_did_not_sample(swept, tmp_path):
    s, records, sets, _, _ = swept
    # The same sweep, but the wgan-clip trial ran with its loss's reference learning rates.
    clip_defaults = make_config({**TINY, "loss": "wgan-clip"}).to_dict()
    t5 = next(x for x in sets if x.label == "t5")
    moved = [x if x is not t5 else Setting(t5.key, t5.label, {**t5.params, **{
        k: clip_defaults[k] for k in ("lr_d", "lr_g")}}, t5.seeds) for x in sets]
    assert "lr_d" not in records.sampled and {x.params["lr_d"] for x in moved} == {1e-4, 5e-5}
    ranked, flagged = stability.rank(stability.setting_stats(x) for x in moved)
    rep = report.write_report(s.client, records, moved, ranked, flagged, tmp_path,
                              study_path=tmp_path / "no-study.db")
    assert not [f for f in rep.files if f.startswith("heatmap_lr_d_x_n_critic")]
