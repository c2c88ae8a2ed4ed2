"""Training from the CLI (`sweeper train`, one seed or `--seeds K`) and evaluation of a
samples file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sweeper.analyse.formatting import format_metrics
from sweeper.analyse.objective import aggregate, rule_params
from sweeper.bars import train_members
from sweeper.errors import UserError
from sweeper.paths import check_file_writable
from sweeper.track import store, tags
from sweeper.track.member_runs import MemberRuns, config_params, step_artifact
from trainers import names
from trainers.config import TrialConfig, make_config
from trainers.data import build_dataset, dataset_shape
from trainers.files import available_memory, check_input_file
from trainers.loop import set_threads
from trainers.members import load_members_file, make_members, save_members_file
from trainers.memory import check_run_fits
from trainers.model_check import check_model
from trainers.quality import DEFAULT_RULE, SuccessRule

# Curves reach MLflow every this many evaluations (and at the end): live enough to watch in
# the UI, few enough calls that logging never shows up in a trial's cost.
FLUSH_EVERY_EVALS = 5


def run_single(cfg: TrialConfig, *, tracking_uri: str | None, experiment: str,
               checkpoint: str | None = None, resume: bool = False,
               samples_out: str | None = None, rule: SuccessRule = DEFAULT_RULE,
               seeds: int = 1) -> dict[str, Any]:
    """Train `cfg` with seeds cfg.seed .. cfg.seed + seeds - 1 (one population where that
    pays), optionally resuming a checkpoint; one MLflow run per seed. Returns the final
    metrics: one seed's dict, or for several `{"seeds": [...], aggregates, train_seconds}`."""
    cfgs = [cfg.replace(seed=cfg.seed + j) for j in range(seeds)]
    # Everything that can be checked is checked before any run is opened or step trained.
    for path, what in ((checkpoint, "--checkpoint"), (samples_out, "--samples-out")):
        if path:
            check_file_writable(path, what)
    if tracking_uri:
        tracking_uri = store.check_tracking_uri(tracking_uri)
    # What cannot fit in memory, then a bad model: one line each, before anything is built.
    check_run_fits(cfg, dataset_shape(cfg), members=seeds)
    check_model(cfg, dataset_shape(cfg))
    set_threads()
    if resume and checkpoint and Path(checkpoint).exists():
        members = load_members_file(checkpoint, device=cfg.device, rule=rule)
        if [c.replace(device=cfg.device) for c in members.configs] != cfgs:
            raise UserError(f"checkpoint {checkpoint} was made with another config; drop "
                            "--resume to start over or pass the same options")
        print(f"resuming from step {members.step}", file=sys.stderr)
    else:
        members = make_members(cfgs, rule)
    runs = MemberRuns([_start_tracking(c, rule, tracking_uri, experiment) for c in cfgs]
                      if tracking_uri else [])
    evals = 0
    latest: list[dict[str, float]] = []
    desc = f"train {cfg.loss}" + (f" x{seeds} seeds" if seeds > 1 else "")
    with runs.closed_on_error(lambda: latest):
        for bar, latest in train_members(members, desc):
            evals += 1
            for c, m in zip(cfgs, latest, strict=True):
                prefix = f"seed {c.seed}: " if seeds > 1 else ""
                bar.write(prefix + format_metrics(m))
            if checkpoint:
                save_members_file(members, checkpoint)
            runs.log_metrics(latest)
            # A sample figure at every evaluation: collapse is visible at a glance in the UI.
            runs.log_samples(members, latest, title=_title, artifact=step_artifact)
            if evals % FLUSH_EVERY_EVALS == 0:
                runs.flush()
    samples = members.sample().cpu().numpy()
    if samples_out:
        for path, x in zip(samples_paths(samples_out, cfgs), samples, strict=True):
            np.save(path, x)
    runs.close(latest, "finished")
    for logger in runs.loggers:
        print(f"mlflow run {logger.run_id} in experiment {experiment!r} ({tracking_uri})",
              file=sys.stderr)
    if seeds == 1:
        return latest[0]
    return {**aggregate(latest), "seeds": [{"seed": c.seed, **m}
                                           for c, m in zip(cfgs, latest, strict=True)],
            names.TRAIN_SECONDS: members.train_seconds}


def samples_paths(samples_out: str, cfgs: list[TrialConfig]) -> list[Path]:
    """Where each seed's samples go: the path itself for one seed, else X-seed{S}.npy."""
    p = Path(samples_out)
    if len(cfgs) == 1:
        return [p]
    stem = p.name[: -len(".npy")] if p.name.endswith(".npy") else p.name
    return [p.with_name(f"{stem}-seed{c.seed}.npy") for c in cfgs]


def _start_tracking(cfg: TrialConfig, rule: SuccessRule, uri: str,
                    experiment: str) -> store.RunLogger:
    client = store.client(uri)  # uri already checked by run_single
    exp_id = store.experiment_id(client, experiment)
    name = f"{cfg.loss}-{cfg.dataset}-seed{cfg.seed}"
    run = client.create_run(exp_id, run_name=name, tags={tags.TAG_KIND: "train"})
    logger = store.RunLogger(client, run.info.run_id)
    logger.log_params({**config_params(cfg), **rule_params(rule)})
    return logger


def _title(cfg: TrialConfig, m: dict[str, float]) -> str:
    return f"{cfg.loss} on {cfg.dataset}, seed {cfg.seed}\n{format_metrics(m)}"


# What reading a samples file costs in memory per byte of its data: the array itself, its
# float32 copy, and the metrics' float64 working copies of it.
_SAMPLES_MEMORY_FACTOR = 4


def _check_npy_header(p: Path, size: int) -> None:
    """Read only an .npy's header (magic, dtype, shape) and refuse, before the data is read,
    a header that is not an array of numbers, claims more data than the file holds, or more
    than fits in memory."""
    with p.open("rb") as f:
        try:
            major, _ = np.lib.format.read_magic(f)
        except ValueError:
            return  # not an .npy (an .npz, text...): np.load names it below
        try:
            read = {1: np.lib.format.read_array_header_1_0,
                    2: np.lib.format.read_array_header_2_0}.get(major)
            if read is None:
                return
            shape, _, dtype = read(f, max_header_size=10_000)
        except (ValueError, OverflowError, SyntaxError) as e:
            raise UserError(f"samples file {p} has a damaged .npy header ({_short(e)}); save "
                            "it with numpy.save") from None
        data_bytes = size - f.tell()
    if dtype.hasobject or dtype.kind not in "fiu":
        raise UserError(f"samples file {p} holds {dtype} values; it must hold numbers")
    n = 1
    for d in shape:
        n *= int(d)
    claimed = n * dtype.itemsize
    if claimed > data_bytes:
        raise UserError(f"samples file {p} claims shape {tuple(shape)} ({claimed:,} bytes) but "
                        f"holds {data_bytes:,} bytes of data; it is cut off or damaged")
    need, have = _SAMPLES_MEMORY_FACTOR * claimed, available_memory()
    if need > have:
        raise UserError(f"samples file {p} ({claimed / 2**30:.1f} GiB of samples) needs about "
                        f"{need / 2**30:.1f} GiB of memory to score, more than the "
                        f"{have / 2**30:.1f} GiB available; score a subset (fewer rows)")


def load_samples(path: str | Path) -> np.ndarray:
    """Read an .npy of samples and check it, with one clear line for each way it can be bad.
    What the file is (a regular file), its header (shape, dtype) and what it needs in memory
    are checked before its data is read."""
    p = Path(path)
    size = check_input_file(p, "samples file", fix="give an .npy saved with numpy.save")
    _check_npy_header(p, size)
    try:
        x = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"samples file {p} does not exist") from None
    except (ValueError, EOFError, OSError) as e:
        raise UserError(f"samples file {p} is not a readable .npy array ({_short(e)}); save "
                        "it with numpy.save") from None
    if isinstance(x, np.lib.npyio.NpzFile):
        x.close()
        raise UserError(f"samples file {p} is an .npz archive; save one N x D array with "
                        "numpy.save (.npy)")
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiu":
        raise UserError(f"samples file {p} holds {x.dtype} values; it must hold numbers")
    if x.ndim < 2 or len(x) < 2:
        raise UserError(f"samples file {p} has shape {x.shape}; it needs N >= 2 samples")
    bad = int((~np.isfinite(x.reshape(len(x), -1))).any(1).sum())
    if bad:
        raise UserError(f"samples file {p} has {bad} samples with NaN or inf values; drop "
                        "them (they usually mean the generator diverged)")
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    big = int((~np.isfinite(x32.reshape(len(x32), -1))).any(1).sum())
    if big:
        raise UserError(f"samples file {p} has {big} samples with values beyond float32's "
                        "range (|x| > 3.4e38); the metrics are computed in float32")
    return x32


def evaluate_file(path: str | Path, values: dict[str, Any],
                  rule: SuccessRule = DEFAULT_RULE) -> dict[str, float]:
    """Data-side metrics of a samples file, with the real set drawn at the same N."""
    set_threads()
    make_config(values)  # an unknown dataset fails here, before the file is read
    x = load_samples(path)
    cfg = make_config({**values, "eval_samples": len(x), "device": "cpu"})
    data = build_dataset(cfg, torch.device("cpu"))
    if tuple(x.shape[1:]) != tuple(data.shape):
        want = "N x " + " x ".join(str(d) for d in data.shape)
        raise UserError(f"samples file {path} has shape {x.shape}; this dataset needs {want}")
    return data.evaluate(torch.from_numpy(x), rule)


def _short(e: Exception) -> str:
    return " ".join(str(e).split())[:160]
