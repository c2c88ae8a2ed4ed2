"""gan-sweeper's sweeper, in layers (tests/sweeper/test_layering.py enforces the order):

    cli/      the `sweeper` command group and its options
    tune/     Ray Tune + Optuna: sweep driver, trials, spaces, recovery, callbacks
    track/    MLflow: the run store, the sweep reader, every tag name
    analyse/  objective, stability, reports, confirm runs, figures
    errors.py, paths.py, bars.py: leaves every layer may use
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# Before the sub-packages every module sat in sweeper/. A sweep directory written then holds
# pickles (Tune's searcher and tuner state, the trial context) that name the old modules, and
# Ray workers unpickle them in fresh processes; importing an old name gives the new module,
# so such a sweep still resumes. New code imports the new names (the layering test checks).
MOVED = {
    "sweeper.tracking": "sweeper.track.store",
    "sweeper.mlflow_reader": "sweeper.track.reader",
    "sweeper.objective": "sweeper.analyse.objective",
    "sweeper.stability": "sweeper.analyse.stability",
    "sweeper.report": "sweeper.analyse.report",
    "sweeper.confirm": "sweeper.analyse.confirm",
    "sweeper.plots": "sweeper.analyse.figures",
    "sweeper.formatting": "sweeper.analyse.formatting",
    "sweeper.sweep": "sweeper.tune.driver",
    "sweeper.trial": "sweeper.tune.trial",
    "sweeper.tune_state": "sweeper.tune.recovery",
    "sweeper.callbacks": "sweeper.tune.callbacks",
    "sweeper.progress": "sweeper.tune.progress",
    "sweeper.driver_lock": "sweeper.tune.driver_lock",
    "sweeper.interrupt": "sweeper.tune.interrupt",
    "sweeper.spaces": "sweeper.tune.spaces",
    "sweeper.analysis_cli": "sweeper.cli.analysis",
    "sweeper.options": "sweeper.cli.options",
    "sweeper.single": "sweeper.cli.train",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module name to the module object under its new name."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 - importlib's signature
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):  # noqa: ANN001
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):  # noqa: ANN001 - already executed under its new name
        pass


if not any(isinstance(f, _Alias) for f in sys.meta_path):
    sys.meta_path.append(_Alias())
