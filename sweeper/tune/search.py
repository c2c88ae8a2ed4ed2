"""The searcher: Optuna proposes settings (TPE or random search) through Ray Tune's
`OptunaSearch`, hears only final objectives, and for a fused sweep asks several settings of
one shape per Tune trial."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.errors import UserError
from sweeper.tune.recovery import TUNE_TRIAL_ATTR, find_trial
from trainers import names
from trainers.population import SHARED

if TYPE_CHECKING:
    from sweeper.tune.driver import SweepOptions

SEARCHES = ("tpe", "random")


def optuna_search(opts: SweepOptions, path: Path, fuse: int = 1, settings: int = 0):
    """The sweep's Tune searcher over its Optuna study (`<sweep>/optuna.db`)."""
    import optuna
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.utils.util import unflatten_dict

    from sweeper.tune.trial_ids import FUSED, SETTINGS, fused_settings, setting_ids

    shape_names = [n for n in opts.space.sampled_names() if n in SHARED]

    class FinalOnlyOptunaSearch(OptunaSearch):
        """Optuna hears only final objectives. A trial stopped early by ASHA never reports
        `objective`, so Ray tells Optuna it was PRUNED (not COMPLETE with a truncated value)
        and TPE fits its model to finished trials only.

        With `fuse` > 1 a Tune trial trains several settings (`sweeper run --fuse`): each is
        its own Optuna trial, asked here and told its own outcome when the Tune trial ends
        (PRUNED for one that successive halving stopped). Settings of one trial must share a
        shape (the sampled params in trainers.population.SHARED, e.g. loss and n_critic), so
        the first is sampled freely and the others with those params pinned to its values
        (an enqueued partial trial: TPE samples the rest). Pinning, not grouping free draws
        by shape: in the default space's 15 shapes free draws would rarely share one."""

        def __init__(self, *args, fuse: int = 1, settings: int = 0, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.fuse, self.settings_left = fuse, settings
            # Settings asked but of another shape than their trial's (a rebuild re-enqueues
            # cut-off settings): they open the next trial.
            self.held: list = []
            self._fused: dict[str, list] = {}  # Tune trial id -> its settings' params
            self._latest: dict[str, str] = {}  # Tune trial id -> its latest summaries

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if self.fuse > 1 and SETTINGS in result:  # an error's completion has no result
                self._latest[trial_id] = result[SETTINGS]

        def suggest(self, trial_id: str):
            if self.fuse == 1:
                suggestion = super().suggest(trial_id)
                if trial_id in self._ot_trials:  # lets a resume find the study trial again
                    self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ATTR, trial_id)
                return suggestion
            if trial_id in self._fused:  # asked again after a restore
                return {FUSED: self._fused[trial_id]}
            picked = self._pick_settings()
            if not picked:
                return Searcher.FINISHED
            params = [unflatten_dict(p) for _, p in picked]
            ids = setting_ids(trial_id, {FUSED: params})
            for sid, (ot_trial, _) in zip(ids, picked, strict=True):
                self._ot_trials[sid] = ot_trial
                ot_trial.set_user_attr(TUNE_TRIAL_ATTR, sid)
            self._fused[trial_id] = params
            return {FUSED: params}

        def _pick_settings(self) -> list:
            waiting = optuna.trial.TrialState.WAITING
            picked = [self.held.pop(0)] if self.held else []
            while len(picked) < self.fuse:
                if picked:
                    same = [h for h in self.held if _shape(h[1]) == _shape(picked[0][1])]
                    if same:
                        self.held.remove(same[0])
                        picked.append(same[0])
                        continue
                if self.settings_left <= 0:
                    break
                if picked and not self._ot_study.get_trials(deepcopy=False, states=(waiting,)):
                    self._ot_study.enqueue_trial(
                        {n: picked[0][1][n] for n in shape_names if n in picked[0][1]},
                        skip_if_exists=False)
                ot_trial = self._ot_study.ask()
                params = self._suggest_from_define_by_run_func(self._space, ot_trial)
                self.settings_left -= 1
                if picked and _shape(params) != _shape(picked[0][1]):
                    self.held.append((ot_trial, params))
                else:
                    picked.append((ot_trial, params))
            return picked

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            fused = self._fused.get(trial_id) if self.fuse > 1 else None
            if fused is not None:
                last = result or {SETTINGS: self._latest.get(trial_id)}
                ended = {e["id"]: e for e in fused_settings(last) or []}
                for sid in setting_ids(trial_id, {FUSED: fused}):
                    e = ended.get(sid, {})
                    final = e.get("metrics", {}) if e.get("status") == "finished" else {}
                    self._tell(sid, final, error and e.get("status") != "stopped_early")
                return
            self._tell(trial_id, result, error)

        def _tell(self, trial_id: str, result, error: bool) -> None:
            # A searcher state one snapshot older than the experiment state (driver killed
            # mid-copy) does not know a restored trial: find it in the study instead of
            # crashing the sweep with a KeyError. `reconcile_study` covers the rest.
            if trial_id not in self._ot_trials:
                t = find_trial(self._ot_study, trial_id)
                if t is None or t.state != optuna.trial.TrialState.RUNNING:
                    return
                self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, t._trial_id)
            super().on_trial_complete(trial_id, result=result, error=error)

    def _shape(params: dict) -> tuple:
        return tuple(params.get(n) for n in shape_names)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{path / 'optuna.db'}")
    sampler = make_sampler(opts.search, opts.sampler_seed, startup=opts.tpe_startup,
                           multivariate=opts.tpe_multivariate, constant_liar=fuse > 1)
    return FinalOnlyOptunaSearch(space=opts.space, metric=names.OBJECTIVE, mode="min",
                                 sampler=sampler, study_name=opts.name, storage=storage,
                                 fuse=fuse, settings=settings)


def make_sampler(search: str, seed: int | None, *, startup: int = 10,
                 multivariate: bool = False, constant_liar: bool = False):
    """The Optuna sampler behind `--search`. TPE's first `startup` suggestions come from its
    own RandomSampler(seed), so with equal seeds they are exactly random search's first ones:
    the two differ only after TPE's start-up. `constant_liar` (fused sweeps, which ask
    several settings before any ends) makes TPE count the running ones as bad results, so
    it spreads them instead of proposing the same region P times."""
    import warnings

    import optuna

    if search == "tpe":
        with warnings.catch_warnings():  # multivariate and group are "experimental" options
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                              multivariate=multivariate, group=multivariate,
                                              constant_liar=constant_liar)
    if search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown search {search!r}; use one of {', '.join(SEARCHES)}")
