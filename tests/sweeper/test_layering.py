"""The import structure: no module cycles in `trainers/` or `sweeper/`, the trainer knows
nothing of the sweeper or of Ray, Optuna and MLflow, and `from sweeper.cli import cli` is
the whole command group. Imports are read from the source (ast), so a late import inside a
function counts; imports only for type checkers (`if TYPE_CHECKING:`) do not."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("trainers", "sweeper")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            mods[".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = f
    return mods


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> set[str]:
    """Every module path `path` imports at run time (`from pkg import sub` names pkg.sub)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for target in _imports(path):
            if target in mods and target != name:
                deps.add(target)
        # `from trainers import names` imports trainers.names, not the package's __init__.
        graph[name] = {d for d in deps if not (d in PACKAGES and
                                               any(x.startswith(d + ".") for x in deps))}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_do_not_count(tmp_path) -> None:
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nimport os\nif TYPE_CHECKING:\n"
                 "    import json\ndef g():\n    import math\n")
    assert _imports(f) == {"typing", "typing.TYPE_CHECKING", "os", "math"}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    inside = {m for m in import_graph() if m.split(".")[0] == package}
    graph = {m: d & inside for m, d in import_graph().items() if m in inside}
    assert cycles(graph) == []


def test_the_trainer_knows_nothing_of_the_sweeper_ray_optuna_or_mlflow() -> None:
    for name, path in _modules().items():
        if name.split(".")[0] != "trainers":
            continue
        top = {t.split(".")[0] for t in _imports(path)}
        assert not top & {"sweeper", "ray", "optuna", "mlflow"}, name


# The sweeper's layers, lowest first: a module may import its own layer and the ones below.
# analyse and track share a layer (the reader builds stability's Settings; confirm runs log
# to MLflow); the module graph still has no cycles.
LAYERS = {"trainers": 0, "sweeper": 1, "sweeper.analyse": 2, "sweeper.track": 2,
          "sweeper.tune": 3, "sweeper.cli": 4}


def layer_of(module: str) -> str:
    """The layer a module belongs to: its sub-package, or `sweeper` for the shared leaves."""
    parts = module.split(".")
    if parts[0] == "trainers":
        return "trainers"
    return ".".join(parts[:2]) if len(parts) > 2 or module in LAYERS else "sweeper"


def test_every_sweeper_module_sits_in_a_layer() -> None:
    for name in _modules():
        assert layer_of(name) in LAYERS, name
    leaves = sorted(m for m in _modules() if layer_of(m) == "sweeper")
    # The package's __init__ (old-name aliases) and the leaves every layer may use.
    assert leaves == ["sweeper", "sweeper.bars", "sweeper.commands", "sweeper.errors",
                      "sweeper.paths"]


def test_layers_only_import_downwards() -> None:
    wrong = []
    for name, deps in import_graph().items():
        for dep in deps:
            if LAYERS[layer_of(dep)] > LAYERS[layer_of(name)]:
                wrong.append(f"{name} -> {dep}")
    assert wrong == []


def test_the_old_flat_module_names_still_load_pickles() -> None:
    # Sweep directories written before the sub-packages pickle the old names (Tune's searcher
    # state holds the SearchSpace, the trial context its class); a resume must unpickle them.
    import sweeper

    # In a fresh process, as a Ray worker unpickles: every old name is its new module.
    code = ("import importlib, sys, sweeper; print(all(importlib.import_module(o) is "
            "sys.modules[n] for o, n in sweeper.MOVED.items()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
    assert len(sweeper.MOVED) == 19
    import pickle

    from sweeper.tune.spaces import Param
    from sweeper.tune.trial import run_trial

    assert pickle.loads(b"csweeper.trial\nrun_trial\n.") is run_trial
    assert pickle.loads(b"csweeper.spaces\nParam\n.") is Param


def test_no_code_imports_an_old_flat_name() -> None:
    import sweeper

    for folder in ("trainers", "sweeper", "tests", "benchmarks"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            assert not _imports(f) & set(sweeper.MOVED), f


def test_the_cli_group_has_every_command_without_side_effect_imports() -> None:
    code = ("from sweeper.cli import cli, COMMANDS; "
            "print(sorted(cli.commands) == sorted(c.name for c in COMMANDS), "
            "sorted(cli.commands))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("True"), out.stdout
    for name in ("train", "eval", "run", "stable", "compare", "report", "ui", "spaces"):
        assert f"'{name}'" in out.stdout
