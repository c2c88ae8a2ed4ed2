"""A user's own generator and critic: `--model path/to/file.py:function` or
`--model package.module:function`.

The function is called as `function(cfg, shape)` with the run's `TrialConfig` and the shape
of one real sample (`(2,)`, `(3, 32, 32)`) and returns `(generator, critic)`, two plain
`torch.nn.Module`s: the generator maps `[B, cfg.z_dim]` noise to `[B, *shape]`, the critic
maps `[B, *shape]` to `[B]` or `[B, 1]`. Member j of a population is built as a single run
with seed j would be (`torch.manual_seed(seed)`, then the call), and K members train as one
batched population through torch.func (trainers/stacked.py), so any module that `vmap`
can batch works, batch norm included.

`trainers.model_check.check_model` probes a spec before anything trains (and before Ray
starts in a sweep): each way a model can be wrong is one line (a `ConfigError`) naming the
spec and the fix.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from trainers.errors import ConfigError

if TYPE_CHECKING:
    from trainers.config import TrialConfig

# `file.py:function` (any path) or `package.module:function`.
SPEC_RE = re.compile(r"^(?P<where>.+\.py|[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*):"
                     r"(?P<function>[A-Za-z_]\w*)$")
_CACHE: dict[tuple[str, float], Callable[..., Any]] = {}


def is_user_spec(spec: str) -> bool:
    return ":" in spec


def check_spec_syntax(spec: str) -> None:
    if not SPEC_RE.match(spec):
        raise ConfigError(f"model {spec[:200]!r} is neither a registered model nor "
                          "path/to/file.py:function or package.module:function")


def resolve_spec(spec: str, base: Path | None = None) -> str:
    """The spec with a relative file path made absolute (against `base`, default the current
    folder): trials run in folders of their own, and an exported setting must still point at
    the file. Module specs and registry names are returned as they are."""
    m = SPEC_RE.match(spec)
    if not m or not m["where"].endswith(".py"):
        return spec
    path = Path(m["where"]).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"{path.resolve()}:{m['function']}"


def _source(spec: str) -> Path | None:
    """The file a spec's function lives in (None when it cannot be found)."""
    where = spec.rsplit(":", 1)[0]
    if where.endswith(".py"):
        return Path(where)
    try:
        found = importlib.util.find_spec(where)
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found is not None and found.origin else None


def source_digest(spec: str) -> str:
    """SHA-1 of the model file's text, logged beside the spec so a changed file is visible
    in MLflow ("" when the file cannot be read)."""
    src = _source(spec)
    try:
        return hashlib.sha1(src.read_bytes()).hexdigest() if src is not None else ""
    except OSError:
        return ""


# The MLflow param beside `model` that names the model file's version.
SOURCE_PARAM = "model_sha1"


def model_params(cfg: TrialConfig) -> dict[str, str]:
    """What a run records of its networks beyond `cfg.model`: the SHA-1 of a user model's
    file, so a run trained after the file changed is told apart ({} for registered models)."""
    if not is_user_spec(cfg.model):
        return {}
    return {SOURCE_PARAM: source_digest(cfg.model) or "unreadable"}


def load_builder(spec: str) -> Callable[..., Any]:
    """The function a spec names (imported once per file version, per process)."""
    check_spec_syntax(spec)
    where, function = spec.rsplit(":", 1)
    src = _source(spec)
    try:
        stamp = src.stat().st_mtime if src is not None else 0.0
    except OSError:
        stamp = 0.0
    if (spec, stamp) in _CACHE:
        return _CACHE[(spec, stamp)]
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"model file {where[:200]} does not exist (from --model "
                              f"{spec[:200]}); give path/to/file.py:function")
        name = "gan_sweeper_user_model_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's file may raise anything
            del sys.modules[name]
            raise ConfigError(f"model file {where[:200]} raised {describe_error(e)} when imported; "
                              "fix the file") from None
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            raise ConfigError(f"model module {where[:200]} cannot be imported "
                              f"({describe_error(e)}); install it or put it on PYTHONPATH, or "
                              "give path/to/file.py:function") from None
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"model module {where[:200]} raised {describe_error(e)} when "
                              "imported; fix the module") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ConfigError(f"model {spec[:200]}: {where[:200]} has no function {function!r}; "
                          "give file.py:function naming a function defined there")
    _CACHE[(spec, stamp)] = fn
    return fn


def describe_error(e: BaseException) -> str:
    """An exception as one short line: its type and message."""
    msg = " ".join(str(e).split())[:200]
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def build_user_models(spec: str, cfg: TrialConfig,
                      shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """Call the user's function; anything but two modules is one line naming the spec."""
    fn = load_builder(spec)
    try:
        out = fn(cfg, tuple(shape))
    except Exception as e:  # noqa: BLE001 - the user's function may raise anything
        raise ConfigError(f"model {spec[:200]}: the function raised {describe_error(e)}; fix "
                          "it (it is called as function(cfg, shape))") from None
    if (not isinstance(out, tuple | list) or len(out) != 2
            or not all(isinstance(m, nn.Module) for m in out)):
        got = type(out).__name__ if not isinstance(out, tuple | list) else \
            f"{len(out)} values ({', '.join(type(m).__name__ for m in out)[:100]})"
        raise ConfigError(f"model {spec[:200]}: the function must return (generator, "
                          f"critic), two torch.nn.Modules; it returned {got}")
    return out[0], out[1]
