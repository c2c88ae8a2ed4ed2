"""Search spaces: small YAML files turned into Optuna define-by-run functions.

    description: WGAN-GP on ring8          # one line, shown by `sweeper spaces`
    fixed:                                 # constant TrialConfig fields
      dataset: ring8
      steps: 1500
      model: nets.py:build                 # optional: your own networks (docs/trainer.md)
    params:                                # sampled, in this order; keys are TrialConfig fields
      loss: {choice: [bce-ns, wgan-clip, wgan-gp]}
      gp_lambda: {log_uniform: [0.1, 100], when: {loss: wgan-gp}}
      clip_value: {log_uniform: [0.001, 1], when: {loss: wgan-clip}}
      n_critic: {int: [1, 10]}
    success:                               # optional: overrides of the success rule
      min_hq_ratio: 0.6                    # (trainers/quality.py SuccessRule fields)
    fuse: auto                             # optional: settings per trial (`--fuse`)

Kinds: choice, uniform, log_uniform, int, log_int. `when` makes a parameter conditional on
an earlier categorical one: it is suggested only when that parameter takes one of the values
given, so TPE never wastes a dimension on a lambda that a clipped WGAN ignores.
Every key and every bound is checked against TrialConfig before Ray starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweeper.errors import UserError, one_line
from trainers.config import (
    FIELDS,
    ConfigError,
    TrialConfig,
    coerce,
    describe_range,
    load_yaml,
    make_config,
)
from trainers.files import TEXT_LIMIT, check_input_file
from trainers.quality import rule_from_mapping
from trainers.user_data import resolve_dataset
from trainers.user_models import resolve_spec

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
KINDS = ("choice", "uniform", "log_uniform", "int", "log_int")
_TOP_KEYS = ("description", "fixed", "params", "success", "fuse")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    values: tuple[Any, ...]  # choices, or (low, high)
    when: tuple[str, tuple[Any, ...]] | None = None  # (parent param, values that enable it)

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        low, high = self.values
        if self.kind in ("int", "log_int"):
            return trial.suggest_int(self.name, int(low), int(high), log=self.kind == "log_int")
        return trial.suggest_float(self.name, float(low), float(high),
                                   log=self.kind == "log_uniform")

    def describe(self) -> str:
        body = (f"{{{', '.join(map(str, self.values))}}}" if self.kind == "choice"
                else f"{self.kind} [{self.values[0]:g}, {self.values[1]:g}]")
        if self.when:
            body += f" when {self.when[0]} in {{{', '.join(map(str, self.when[1]))}}}"
        return f"{self.name}: {body}"


@dataclass(frozen=True)
class SearchSpace:
    """A parsed space; calling it with an Optuna trial is the define-by-run function."""

    name: str
    source: str  # path of the YAML file
    text: str  # the YAML as written, logged with the sweep
    description: str
    fixed: dict[str, Any] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    success: dict[str, float] = field(default_factory=dict)  # success-rule overrides
    # The folder relative model files (`model: nets.py:build`) were resolved against: the
    # folder the sweep started in, saved so that a resume from elsewhere finds the same file.
    base: str = ""
    # Settings per trial (`sweeper run --fuse`): a count or "auto"; None = not said (1).
    fuse: int | str | None = None

    def __call__(self, trial) -> dict[str, Any]:
        """Only suggest_* calls, as OptunaSearch requires; returns the fixed values."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if p.when is None or chosen.get(p.when[0]) in p.when[1]:
                chosen[p.name] = p.suggest(trial)
        return dict(self.fixed)

    def sampled_names(self) -> list[str]:
        return [p.name for p in self.params]

    def model_configs(self) -> list[TrialConfig]:
        """One config per model the space can train (fixed, or each choice), for probing
        the networks before any trial starts (`trainers.model_check`)."""
        seen: dict[str, TrialConfig] = {}
        for combo in _choice_combinations(self.fixed, [p for p in self.params
                                                       if p.kind == "choice"]):
            cfg = make_config(combo)
            seen.setdefault(cfg.model, cfg)
        return list(seen.values())


# The TrialConfig fields a trial's memory grows with (trainers/memory.py).
SIZE_FIELDS = ("hidden", "depth", "batch_size", "eval_samples", "z_dim")


def largest_configs(space: SearchSpace) -> list[TrialConfig]:
    """`space.model_configs()` with every sampled size at the top of its range or choices:
    the largest trial the space can propose, which must fit in memory."""
    tops = {p.name: max(p.values) for p in space.params if p.name in SIZE_FIELDS}
    return [cfg.replace(**tops) for cfg in space.model_configs()]


def resolve_space_path(name_or_path: str) -> Path:
    """A shipped space by name (`wgan-gp`) or any YAML file by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        if p.is_dir():
            raise UserError(f"search space {p} is a directory; give a .yaml file")
        if not p.exists():
            raise UserError(f"search space file {p} does not exist")
        return p  # what it is (a pipe, a device, too large) is checked before it is read
    shipped = SPACES_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise UserError(f"unknown search space {name_or_path!r}; shipped spaces: "
                        f"{', '.join(shipped_spaces())} (or pass a path to a .yaml file)")
    return shipped


def shipped_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_space(name_or_path: str, base: Path | None = None) -> SearchSpace:
    path = resolve_space_path(name_or_path)
    try:
        check_input_file(path, "search space file", max_bytes=TEXT_LIMIT,
                         fix="give a .yaml space file")
    except ConfigError as e:
        raise UserError(str(e)) from None
    try:
        text = path.read_text(encoding="utf-8")
        doc = load_yaml(text)
    except RecursionError:
        raise UserError(f"search space {path} is nested too deep to be a space") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read search space {path}: {one_line(e)}") from None
    except yaml.YAMLError as e:
        raise UserError(f"search space {path} is not valid YAML: {one_line(e)}") from None
    try:
        return parse_space(doc, name=path.stem, source=str(path), text=text, base=base)
    except (UserError, ConfigError) as e:
        raise UserError(f"search space {path}: {one_line(e)}") from None


def parse_space(doc: Any, *, name: str = "space", source: str = "<memory>",
                text: str = "", base: Path | None = None) -> SearchSpace:
    """Validate a YAML document against TrialConfig; raises UserError with one line. Model
    files named relative (`model: nets.py:build`) are resolved against `base` (default:
    the current folder)."""
    base = (base or Path.cwd()).resolve()
    if not isinstance(doc, dict):
        raise UserError("must be a mapping with keys " + ", ".join(_TOP_KEYS))
    for k in doc:
        if k not in _TOP_KEYS:
            raise UserError(f"unknown top-level key {k!r}; allowed: {', '.join(_TOP_KEYS)}")
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise UserError("description must be a string")
    fixed_raw = doc.get("fixed") or {}
    params_raw = doc.get("params") or {}
    if not isinstance(fixed_raw, dict) or not isinstance(params_raw, dict):
        raise UserError("'fixed' and 'params' must be mappings of TrialConfig field: value")
    if not params_raw:
        raise UserError("'params' is empty; a sweep needs at least one sampled parameter")
    fixed = {_field_name(k, "fixed"): coerce(k, v) for k, v in fixed_raw.items()}
    if isinstance(fixed.get("model"), str):
        fixed["model"] = resolve_spec(fixed["model"], base)
    if isinstance(fixed.get("dataset"), str):
        fixed["dataset"] = resolve_dataset(fixed["dataset"], base)
    for k in ("seed",):
        if k in params_raw:
            raise UserError(f"{k!r} cannot be sampled; seeds come from --seeds")
    params: list[Param] = []
    for k, spec in params_raw.items():
        key = _field_name(k, "params")
        if key in fixed:
            raise UserError(f"{key!r} is both fixed and sampled; keep one")
        param = _parse_param(key, spec, params, fixed)
        if key == "model" and param.kind == "choice":
            param = Param(key, "choice", tuple(resolve_spec(str(v), base) for v in param.values),
                          param.when)
        if key == "dataset" and param.kind == "choice":
            param = Param(key, "choice", tuple(resolve_dataset(str(v), base)
                                               for v in param.values), param.when)
        params.append(param)
    _check_values(fixed, params)
    success = doc.get("success") or {}
    try:
        rule_from_mapping(success, where="'success'")  # validates keys and values
    except ConfigError as e:
        raise UserError(str(e)) from None
    fuse = parse_fuse(doc["fuse"], where="'fuse'") if doc.get("fuse") is not None else None
    return SearchSpace(name=name, source=source, text=text, description=description,
                       fixed=fixed, params=tuple(params),
                       success={str(k): float(v) for k, v in success.items()}, base=str(base),
                       fuse=fuse)


def parse_fuse(value: Any, where: str = "--fuse") -> int | str:
    """Settings per trial: a positive count, or "auto"; one line otherwise."""
    if value is None:
        return 1
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    n = int(text) if text.isdigit() else 0
    if n < 1:
        raise UserError(f"{where} must be a positive number of settings or auto, got {value!r}")
    return n


def _field_name(k: Any, where: str) -> str:
    if not isinstance(k, str) or k not in FIELDS:
        raise UserError(f"unknown key {k!r} in '{where}'; valid keys are TrialConfig fields: "
                        f"{', '.join(FIELDS)}")
    return k


def _parse_param(key: str, spec: Any, earlier: list[Param], fixed: dict[str, Any]) -> Param:
    if not isinstance(spec, dict):
        raise UserError(f"param {key!r} must be a mapping like {{log_uniform: [lo, hi]}}")
    kinds = [k for k in spec if k in KINDS]
    extra = [k for k in spec if k not in KINDS and k != "when"]
    if len(kinds) != 1 or extra:
        raise UserError(f"param {key!r} needs exactly one of {', '.join(KINDS)} (and "
                        f"optionally 'when'); got {', '.join(map(str, spec)) or 'nothing'}")
    kind = kinds[0]
    raw = spec[kind]
    ftype = str(FIELDS[key].type)
    if kind == "choice":
        if not isinstance(raw, list) or not raw:
            raise UserError(f"param {key!r}: choice needs a non-empty list of values")
        values = tuple(coerce(key, v) for v in raw)
        if len(set(map(repr, values))) != len(values):
            raise UserError(f"param {key!r}: choice lists a value twice")
    else:
        if (not isinstance(raw, list) or len(raw) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)):
            raise UserError(f"param {key!r}: {kind} needs [low, high] numbers")
        if ftype not in ("int", "float") or (kind in ("int", "log_int") and ftype != "int"):
            raise UserError(f"param {key!r} is {describe_range(FIELDS[key])}; {kind} does "
                            "not fit it")
        low, high = (float(v) for v in raw)
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise UserError(f"param {key!r}: need finite low < high, got [{raw[0]}, {raw[1]}]")
        if kind.startswith("log") and low <= 0:
            raise UserError(f"param {key!r}: {kind} needs low > 0, got {raw[0]}")
        if kind in ("int", "log_int"):
            if not (low.is_integer() and high.is_integer()):
                raise UserError(f"param {key!r}: {kind} bounds must be whole numbers")
            values = (int(low), int(high))
        else:
            values = (low, high)
    when = _parse_when(key, spec.get("when"), earlier, fixed) if "when" in spec else None
    return Param(key, kind, values, when)


def _parse_when(key: str, raw: Any, earlier: list[Param],
                fixed: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise UserError(f"param {key!r}: 'when' must be one mapping like {{loss: wgan-gp}}")
    ((parent, wanted),) = raw.items()
    choices = {p.name: p for p in earlier if p.kind == "choice"}
    if parent not in choices:
        raise UserError(f"param {key!r}: 'when' must name an earlier choice parameter; "
                        f"{parent!r} is not one")
    wanted = tuple(wanted) if isinstance(wanted, list) else (wanted,)
    for w in wanted:
        if w not in choices[parent].values:
            raise UserError(f"param {key!r}: 'when' value {w!r} is not a choice of {parent!r} "
                            f"({', '.join(map(str, choices[parent].values))})")
    return parent, wanted


def _check_values(fixed: dict[str, Any], params: list[Param]) -> None:
    """Every combination of the choices, and both ends of every range, must make a valid
    TrialConfig (a loss with a built-in penalty and a second penalty would fail as trials)."""
    combos = _choice_combinations(fixed, [p for p in params if p.kind == "choice"])
    for combo in combos:
        try:
            make_config(combo)
        except ConfigError as e:
            chosen = ", ".join(f"{k}={v}" for k, v in combo.items() if k not in fixed)
            raise UserError(f"the choices {chosen}: {e}") from None
    for p in params:
        if p.kind == "choice":
            continue
        base = next((c for c in combos if p.when is None or c.get(p.when[0]) in p.when[1]),
                    combos[0])
        for v in p.values:
            try:
                make_config({**base, p.name: v})
            except ConfigError as e:
                raise UserError(f"param {p.name!r}: {e}") from None


_MAX_COMBINATIONS = 4096  # a space with more categorical combinations is checked in part


def _choice_combinations(fixed: dict[str, Any], choices: list[Param]) -> list[dict[str, Any]]:
    """The fixed values with each combination of the choice params (as `__call__` suggests
    them: a conditional choice only where its `when` holds)."""
    combos = [dict(fixed)]
    for p in choices:
        grown = []
        for c in combos:
            if p.when is not None and c.get(p.when[0]) not in p.when[1]:
                grown.append(c)
            else:
                grown += [{**c, p.name: v} for v in p.values]
        combos = grown[:_MAX_COMBINATIONS]
    return combos
