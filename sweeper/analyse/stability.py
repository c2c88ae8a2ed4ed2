"""Which settings train stably across seeds, and how sure are we? Pure analysis on plain data.

A *setting* is one point of the search space (one sweep trial), trained with several seeds.
From the final metrics of each seed:

- A seed **succeeds** when it did not diverge, passed the success rule the trainer judged it by
  (`seed_success`, trainers/quality.py: enough modes *held*, each with a real share of the HQ
  samples, and an HQ fraction near the real data's), and none of its headline metrics
  (modes_covered, num_modes, mode_kl, fid, seed_score) is NaN or inf. A diverged seed, a seed
  with no metrics (or none of the quality metrics), a seed whose run is missing, and a NaN are
  all failures: nothing breaks the table.
- **Success rate** = successes / seeds, with two 95% intervals:
  the Wilson score interval (closed form; sensible at 3 seeds, where 3/3 gives [0.44, 1]),
  and a percentile bootstrap interval (N_BOOT resamples of the seeds, RNG seed
  BOOTSTRAP_SEED, so the numbers are reproducible). With few seeds the bootstrap interval of
  a proportion degenerates (3/3 resamples to [1, 1]); that is why **ranking uses the Wilson
  lower bound**, always, and the bootstrap interval is shown for reference.
- **Median score** (`seed_score`, lower is better; a diverged seed counts as 1) and **median
  FID** (a diverged or FID-less seed counts as inf) over all seeds, as in the sweep objective,
  each with a bootstrap 95% interval (same resamples rule) and the min-max spread. FID is
  compared at equal sample count only (the `fid_n` of the protocol), and so is the score.
- **Mean HQ**; **mode KL**: median and min-max; **modes held**: mean and min.

**Ranking** (`objective`, as the sweep's): Wilson lower bound of the success rate, higher
first; then the median score (quality) or the median FID (fid), lower first; then the median
FID (which breaks exact score ties, as in the sweep objective), the success rate itself, and
the label (a stable order for ties).

**Flagged, not ranked**: a setting with fewer than MIN_SEEDS seeds, or not trained to its full
step budget (stopped early by ASHA, errored or still running). Flagged settings are listed
after the ranked ones, in the same order, with the reason; their estimates are not certain
enough (or are of a truncated run) to compete with the ranked ones.

**Stable regions** (`region_grid`): settings are binned on two parameters (e.g. log lambda x
n_critic), and every cell pools the seeds of its settings: success rate = successes / seeds
in the cell, mean HQ, median score and median FID over those seeds. A numeric parameter with
at most MAX_LEVELS distinct integer values gets one bin per value; one spanning at least a
factor LOG_SPAN (all positive) gets one bin per decade (0.1-1, 1-10, ...); any other gets
REGION_BINS equal-width bins.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sweeper.analyse.objective import (
    DEFAULT_OBJECTIVE,
    SeedColumns,
    mean,
    seed_failed,
    seed_fid,
    seed_score,
)
from trainers import names
from trainers.config import applies
from trainers.quality import DEFAULT_RULE, SuccessRule

# Three seeds is the smallest count at which a median and a min-max spread say anything, and
# what `sweeper run` uses by default; Kurach et al. 2019 train each setting 5 times.
MIN_SEEDS = 3
# 95% two-sided intervals everywhere.
Z95 = 1.959963984540054
LEVEL = 0.95
# 2,000 resamples put the Monte-Carlo error of a 2.5% quantile well under its spread.
N_BOOT = 2000
# A fixed seed makes every interval reproducible: the same data always gives the same table.
BOOTSTRAP_SEED = 0
# Binning of the stable-region grids (see the module docstring).
REGION_BINS = 4
MAX_LEVELS = 6
LOG_SPAN = 10.0

# Metrics whose NaN/inf value makes a seed a failure (it could not be measured).
_HEADLINE = (names.MODES_COVERED, names.NUM_MODES, names.MODE_KL, names.FID, names.SEED_SCORE)

FLAG_FEW_SEEDS = "few seeds"
FLAG_PARTIAL = "not at full budget"


@dataclass(frozen=True)
class Setting:
    """One setting's raw material: its params and the final metrics of each of its seeds."""

    key: str  # stable identity (the trial's MLflow run id)
    label: str  # what people read (the Ray trial id)
    params: Mapping[str, Any]
    seeds: Sequence[Mapping[str, float]]  # final metrics per seed; {} = nothing measured
    complete: bool = True  # trained to the full step budget
    source: str = "sweep"  # "sweep", or "confirm" (fresh seeds re-run by `sweeper stable`)
    seed_ids: Sequence[int] = ()


@dataclass(frozen=True)
class SettingStats:
    """A setting's stability numbers (see the module docstring for every definition)."""

    key: str
    label: str
    params: Mapping[str, Any]
    source: str
    n_seeds: int
    successes: int
    diverged: int
    success_rate: float
    success_wilson: tuple[float, float]
    success_boot: tuple[float, float]
    fid_median: float
    fid_ci: tuple[float, float]
    fid_range: tuple[float, float]
    score_median: float
    score_ci: tuple[float, float]
    score_range: tuple[float, float]
    mode_kl_median: float
    mode_kl_range: tuple[float, float]
    modes_covered_mean: float
    modes_covered_min: float
    modes_held_mean: float
    modes_held_min: float
    num_modes: float
    hq_fraction_mean: float
    complete: bool
    flags: tuple[str, ...] = ()
    seed_ids: tuple[int, ...] = field(default=())
    objective: str = DEFAULT_OBJECTIVE  # which median breaks ties: quality (score) or fid
    # Means over the seeds (NaN for seeds logged before they existed); the verdict of data
    # without labelled modes, where num_modes is NaN.
    coverage_mean: float = math.nan
    precision_mean: float = math.nan

    @property
    def labelled(self) -> bool:
        """Whether the data had modes to count (else coverage and precision judge)."""
        return not math.isnan(self.num_modes)

    @property
    def ranked(self) -> bool:
        return not self.flags

    @property
    def success_lower(self) -> float:
        """The number that ranks: the Wilson lower bound of the success rate."""
        return self.success_wilson[0]

    @property
    def tie_break(self) -> float:
        """The median that ranks equally stable settings (the sweep objective's)."""
        return self.fid_median if self.objective == "fid" else self.score_median

    def sort_key(self) -> tuple:
        # Exact score ties (no sample HQ) fall to FID, as in the sweep objective.
        return (-self.success_lower, self.tie_break, self.fid_median, -self.success_rate,
                self.label)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (inf and NaN become None)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["params"] = dict(self.params)
        out["ranked"] = self.ranked
        out["success_lower"] = self.success_lower
        return _json_safe(out)


def clean_metrics(m: Mapping[str, Any]) -> dict[str, float]:
    """Only the finite numeric values (MLflow and JSON may hand back NaN, inf or strings)."""
    out = {}
    for k, v in m.items():
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            out[k] = x
    return out


def seed_succeeded(m: Mapping[str, Any]) -> bool:
    """Neither diverged nor collapsed, and every headline metric it reports is finite."""
    for k in _HEADLINE:
        if k in m:
            try:
                if not math.isfinite(float(m[k])):
                    return False
            except (TypeError, ValueError):
                return False
    return not seed_failed(clean_metrics(m))


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At p = 0 or 1 the exact bound is 0 or 1; the formula can miss it by round-off.
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return lo, hi


def bootstrap_ci(values: Sequence[float], statistic: Callable[..., Any] = np.median, *,
                 n_boot: int = N_BOOT, level: float = LEVEL,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(values)`, reproducible for a given seed.

    The interval ends are order statistics of the resampled statistics (no interpolation),
    so values of inf (diverged seeds' FID) give inf ends instead of NaN.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    stats = np.sort(statistic(x[idx], axis=1))
    alpha = (1.0 - level) / 2.0
    lo = stats[int(math.floor(alpha * (n_boot - 1)))]
    hi = stats[int(math.ceil((1.0 - alpha) * (n_boot - 1)))]
    return float(lo), float(hi)


def setting_stats(s: Setting, *, min_seeds: int = MIN_SEEDS,
                  objective: str = DEFAULT_OBJECTIVE) -> SettingStats:
    """Aggregate one setting over its seeds."""
    seeds = [dict(m) for m in s.seeds]
    n = len(seeds)
    ok = [seed_succeeded(m) for m in seeds]
    clean = [clean_metrics(m) for m in seeds]
    c = SeedColumns.of(clean)  # the values the sweep objective summarises too
    k_modes = max((m.get(names.NUM_MODES, math.nan) for m in clean), default=math.nan)
    flags = []
    if n < min_seeds:
        flags.append(FLAG_FEW_SEEDS)
    if not s.complete:
        flags.append(FLAG_PARTIAL)
    successes = sum(ok)
    fid_med, fid_ci, fid_range = _median_ci_range(c.fids, math.inf)
    score_med, score_ci, score_range = _median_ci_range(c.scores, 1.0)
    return SettingStats(
        key=s.key, label=s.label, params=dict(s.params), source=s.source, n_seeds=n,
        successes=successes,
        diverged=c.diverged,
        success_rate=successes / n if n else 0.0,
        success_wilson=wilson_interval(successes, n),
        success_boot=bootstrap_ci([float(v) for v in ok], np.mean) if n else (0.0, 1.0),
        fid_median=fid_med, fid_ci=fid_ci, fid_range=fid_range,
        score_median=score_med, score_ci=score_ci, score_range=score_range,
        mode_kl_median=statistics.median(c.kls) if c.kls else math.nan,
        mode_kl_range=(min(c.kls), max(c.kls)) if c.kls else (math.nan, math.nan),
        modes_covered_mean=mean(c.covered), modes_covered_min=min(c.covered, default=0.0),
        modes_held_mean=mean(c.held), modes_held_min=min(c.held, default=0.0),
        num_modes=k_modes, hq_fraction_mean=mean(c.hq),
        complete=s.complete, flags=tuple(flags), seed_ids=tuple(s.seed_ids),
        objective=objective,
        coverage_mean=mean(c.coverage) if c.coverage else math.nan,
        precision_mean=mean(c.precision) if c.precision else math.nan)


def _median_ci_range(values: Sequence[float], worst: float
                     ) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """Median, bootstrap 95% interval and min-max; all `worst` when there are no values."""
    if not values:
        return worst, (worst, worst), (worst, worst)
    return statistics.median(values), bootstrap_ci(values), (min(values), max(values))


def missing_quality(settings: Iterable[Setting]) -> int:
    """Seeds that measured something but carry no seed_success: logged before the quality
    rule existed. They count as failures; re-train them (`stable --confirm`) to judge them."""
    return sum(1 for s in settings for m in s.seeds
               if m and names.SEED_SUCCESS not in m and not m.get(names.DIVERGED))


def rank(stats: Iterable[SettingStats]) -> tuple[list[SettingStats], list[SettingStats]]:
    """(ranked, flagged), each best first by the ranking rule."""
    ordered = sorted(stats, key=SettingStats.sort_key)
    return [s for s in ordered if s.ranked], [s for s in ordered if not s.ranked]


def varied_params(settings: Iterable[Setting | SettingStats],
                  candidates: Iterable[str] | None = None) -> list[str]:
    """Params that take more than one value among the settings where they apply.

    gp_lambda counts only for wgan-gp settings, clip_value only for wgan-clip ones and
    penalty_weight only with a penalty (`trainers.config.applies`): the others carry the
    (unused) default in their full config.
    """
    settings = list(settings)
    keys = candidates if candidates is not None else sorted(
        {k for s in settings for k in s.params})
    out = []
    for k in keys:
        vals = {repr(s.params[k]) for s in settings if k in s.params and applies(k, s.params)}
        if len(vals) > 1:
            out.append(k)
    return out


# ------------------------------------------------------------------------- stable regions
@dataclass(frozen=True)
class Bins:
    """How one parameter is cut into bins: labels and the bin index of a value."""

    name: str
    labels: tuple[str, ...]
    edges: tuple[float, ...]  # bin edges in the param's units; () for one-bin-per-value
    levels: tuple[float, ...]  # the values, for one-bin-per-value
    log: bool

    def index(self, v: float) -> int:
        if self.levels:
            return self.levels.index(float(v))
        e = np.log10(self.edges) if self.log else np.asarray(self.edges)
        x = math.log10(v) if self.log else float(v)
        return int(np.clip(np.searchsorted(e, x, side="right") - 1, 0, len(self.labels) - 1))


def make_bins(name: str, values: Sequence[float], *, n_bins: int = REGION_BINS,
              max_levels: int = MAX_LEVELS) -> Bins:
    """Bins for `values` (see the module docstring for the rule)."""
    vals = sorted({float(v) for v in values})
    if not vals:
        raise ValueError(f"no values of {name} to bin")
    log = vals[0] > 0 and vals[-1] / vals[0] >= LOG_SPAN
    if len(vals) <= max_levels and all(v.is_integer() for v in vals):
        return Bins(name, tuple(_fmt(v) for v in vals), (), tuple(vals), False)
    if len(vals) == 1:
        return Bins(name, (_fmt(vals[0]),), (vals[0], vals[0]), (), False)
    if log:
        # Whole decades: the same cells in every sweep, and readable (0.1-1, 1-10, ...).
        # The epsilon keeps 1e-3 (log10 = -2.9999...) in its own decade.
        lo = math.floor(math.log10(vals[0]) + 1e-9)
        hi = max(lo + 1, math.ceil(math.log10(vals[-1]) - 1e-9))
        edges = tuple(float(10.0 ** e) for e in range(lo, hi + 1))
    else:
        edges = tuple(float(c) for c in np.linspace(vals[0], vals[-1], n_bins + 1))
    labels = tuple(f"{_fmt(a)}-{_fmt(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True))
    return Bins(name, labels, edges, (), log)


@dataclass(frozen=True)
class RegionGrid:
    """Pooled success rate and median FID per cell of an x-by-y binning of settings."""

    x: Bins
    y: Bins
    seeds: np.ndarray  # (len(y), len(x)) seeds in the cell
    successes: np.ndarray
    settings: np.ndarray  # settings in the cell
    fid_median: np.ndarray  # NaN where the cell is empty; inf where most seeds diverged
    score_median: np.ndarray  # NaN where the cell is empty
    hq_mean: np.ndarray  # NaN where the cell is empty

    @property
    def success_rate(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.seeds > 0, self.successes / np.maximum(self.seeds, 1), np.nan)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({
            "x": self.x.name, "y": self.y.name, "x_bins": list(self.x.labels),
            "y_bins": list(self.y.labels), "x_log": self.x.log, "y_log": self.y.log,
            "seeds": self.seeds.tolist(), "successes": self.successes.tolist(),
            "settings": self.settings.tolist(), "success_rate": self.success_rate.tolist(),
            "fid_median": self.fid_median.tolist(), "score_median": self.score_median.tolist(),
            "hq_mean": self.hq_mean.tolist()})


def region_points(settings: Iterable[Setting], x: str, y: str) -> list[Setting]:
    """The settings a region grid bins: at full budget (a truncated run's metrics would mix
    "unstable" with "not finished"), and both params apply (gp_lambda only for wgan-gp)."""
    return [s for s in settings if s.complete and x in s.params and y in s.params
            and applies(x, s.params) and applies(y, s.params)]


def region_skip_reason(settings: Iterable[Setting], x: str, y: str) -> str | None:
    """Why there is no x-by-y grid (a param takes a single value), or None if there is one."""
    pts = region_points(settings, x, y)
    if not pts:
        return f"no setting at full budget uses both {x} and {y}"
    fixed = [p for p in (x, y) if len({s.params[p] for s in pts}) < 2]
    if fixed:
        return f"the sweep did not vary {' or '.join(fixed)} (among settings at full budget)"
    return None


def region_grid(settings: Iterable[Setting], x: str, y: str, *,
                n_bins: int = REGION_BINS) -> RegionGrid | None:
    """Bin the settings of `region_points`; None when `region_skip_reason` has a reason."""
    settings = list(settings)
    if region_skip_reason(settings, x, y) is not None:
        return None
    pts = region_points(settings, x, y)
    bx = make_bins(x, [s.params[x] for s in pts], n_bins=n_bins)
    by = make_bins(y, [s.params[y] for s in pts], n_bins=n_bins)
    shape = (len(by.labels), len(bx.labels))
    seeds, succ, count = np.zeros(shape, int), np.zeros(shape, int), np.zeros(shape, int)
    per_cell: dict[tuple[int, int], list[dict[str, float]]] = {}
    for s in pts:
        cell = (by.index(s.params[y]), bx.index(s.params[x]))
        count[cell] += 1
        for m in s.seeds:
            seeds[cell] += 1
            succ[cell] += seed_succeeded(m)
            per_cell.setdefault(cell, []).append(clean_metrics(m))
    fid, score, hq = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for cell, ms in per_cell.items():
        fid[cell] = statistics.median(seed_fid(m) for m in ms)
        score[cell] = statistics.median(seed_score(m) for m in ms)
        hq[cell] = statistics.mean(m.get(names.HQ_FRACTION, 0.0) for m in ms)
    return RegionGrid(bx, by, seeds, succ, count, fid, score, hq)


def region_grids_by_loss(settings: Iterable[Setting], x: str,
                         y: str) -> list[tuple[str, RegionGrid]]:
    """One grid per loss (a cell must not pool seeds of different losses: a BCE seed and a
    WGAN-GP seed at the same n_critic say different things), for the losses that have one."""
    by_loss: dict[str, list[Setting]] = {}
    for s in settings:
        by_loss.setdefault(str(s.params.get("loss", "-")), []).append(s)
    grids = ((loss, region_grid(group, x, y)) for loss, group in sorted(by_loss.items()))
    return [(loss, g) for loss, g in grids if g is not None]


# ------------------------------------------------------------------------- documentation
def definitions_markdown(min_seeds: int = MIN_SEEDS, rule: SuccessRule | None = None,
                         objective: str = DEFAULT_OBJECTIVE) -> str:
    """The definitions above, with their numbers, for summaries and --help."""
    rule = rule or DEFAULT_RULE
    tie = "median FID" if objective == "fid" else "median score"
    return f"""\
- **Seed success**: the seed did not diverge and, at its last evaluation, passed the success \
rule: {rule.describe()}. A mode is *held* when it has at least one HQ sample and at least \
{rule.min_mode_share:g} of its expected share of the HQ samples. On data without labelled \
modes (cifar10, folder:, npy:) the rule is {rule.describe_unlabelled()}. None of modes_covered, \
num_modes, mode_kl, fid, seed_score may be NaN/inf. Diverged seeds, NaNs and missing seed \
runs are failures.
- **Score** (`seed_score`, in [0, 1], lower is better): the total-variation distance between \
the generated and the real histogram over the modes plus one off-mode bin (trainers/quality.py).
- **Success rate** = successes / seeds, with a 95% Wilson score interval and a 95% percentile \
bootstrap interval ({N_BOOT} resamples of the seeds, RNG seed {BOOTSTRAP_SEED}).
- **Median score** (a diverged seed counts as 1) and **median FID** (a diverged seed counts as \
inf) over the seeds, each with a 95% bootstrap interval and the min-max spread; both are \
comparable only at equal sample count. Mean HQ. Mode KL: median and min-max. Modes held: \
mean and minimum.
- **Ranking**: the Wilson lower bound of the success rate (higher first), then the {tie} \
(lower first; objective `{objective}`). Wilson, not bootstrap, ranks: with a handful of seeds \
a bootstrap interval of a proportion degenerates (3/3 successes resample to [1, 1]); Wilson \
gives 3/3 a lower bound of 0.44 and 10/10 one of 0.72, so more evidence ranks higher.
- **Flagged, not ranked**: fewer than {min_seeds} seeds, or not trained to the full step budget \
(stopped early by ASHA, errored, still running). Listed after the ranked settings.
- **Confirmed** rows (`sweeper stable --confirm N`) use N fresh seeds the sweep never used, \
instead of the sweep's own seeds, whose best settings are selected on them and so optimistic.
- **Stable regions**: settings at full budget binned on two parameters; each cell pools the \
seeds of its settings (success rate = successes / seeds, mean HQ, median score and FID over \
them). Integer parameters with at most {MAX_LEVELS} values get one bin per value; parameters \
spanning a factor of {LOG_SPAN:g} or more get one bin per decade; others {REGION_BINS} \
equal-width bins."""


# ------------------------------------------------------------------------- helpers
def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _json_safe(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, np.floating | np.integer):
        return _json_safe(v.item())
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    return v
