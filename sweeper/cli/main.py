"""`sweeper`: the command line. User errors print one line and exit 2, never a traceback."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
from typing import Any, NoReturn

import click

from sweeper.analyse.formatting import format_metrics
from sweeper.analyse.objective import check_objective
from sweeper.cli.analysis import compare, report, stable
from sweeper.cli.options import SMOKE, check_seeds, tracking_uri_option
from sweeper.errors import UserError, one_line, short
from trainers import names
from trainers.config import FIELDS, ConfigError, describe_range, load_config_file, make_config
from trainers.user_models import resolve_spec

# Field type names (as annotated, `from __future__ import annotations`) -> click types.
_CLICK_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str}


def config_options(fn):
    """One CLI option per TrialConfig field (`--gp-lambda` ...), plus `--config FILE.yaml`.

    Options default to None, meaning "not given", so the file and the loss's reference
    defaults apply; an option given on the command line overrides the file.
    """
    from trainers.config import LOSS_DEFAULTS

    defaults = make_config()  # the default loss, with its reference values filled in
    per_loss = {k for d in LOSS_DEFAULTS.values() for k in d}
    for f in reversed(dataclasses.fields(defaults)):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        shown = "(empty)" if value == "" else f"{value:g}" if isinstance(value, float) else value
        if f.name in per_loss:  # the reference value of whichever --loss is chosen
            shown = f"the loss's reference value, {defaults.loss}: {shown}"
        help_text = f"{f.metadata['doc']} [{describe_range(f)}; default: {shown}]"
        if str(f.type) == "bool":
            fn = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None,
                              help=help_text)(fn)
        else:
            fn = click.option(flag, f.name, type=_CLICK_TYPES[str(f.type)], default=None,
                              help=help_text, metavar=str(f.type).upper())(fn)
    return click.option("--config", "config_file", type=click.Path(dir_okay=False),
                        help="YAML file of config fields (e.g. from `sweeper stable "
                        "--export`); command-line options override it.")(fn)


def rule_options(fn):
    """One CLI option per SuccessRule field (`--min-coverage` ...), defaulting to "not given"
    so a space file's `success:` block, or the defaults, apply."""
    from trainers.quality import RULE_FIELDS

    for f in reversed(list(RULE_FIELDS.values())):
        fn = click.option("--" + f.name.replace("_", "-"), f.name, type=float, default=None,
                          metavar="FLOAT", help=f"Success rule: {f.metadata['doc']} [default: "
                          f"{f.default:g}; see docs/sweeps.md, Stability]")(fn)
    return fn


def rule_from_options(options: dict[str, Any], base: dict[str, Any] | None = None):
    """The success rule: defaults, then `base` (a space's `success:` block), then options."""
    from trainers.quality import RULE_FIELDS, rule_from_mapping

    given = {k: v for k, v in options.items() if k in RULE_FIELDS and v is not None}
    return rule_from_mapping({**(base or {}), **given})


_objective_option = click.option(
    "--objective", default="quality", show_default=True, metavar="[quality|fid]",
    help="Tie-breaker after failed seeds: the median quality score (seed_score) or the "
    "median FID (docs/sweeps.md: What a sweep optimises).")


def config_from_options(config_file: str | None, options: dict[str, Any],
                        smoke_test: bool = False):
    values = load_config_file(config_file) if config_file else {}
    values.update({k: v for k, v in options.items() if k in FIELDS and v is not None})
    if smoke_test:
        values.update(SMOKE)
    if isinstance(values.get("model"), str):  # a relative model file is the caller's
        values["model"] = resolve_spec(values["model"])
    if isinstance(values.get("dataset"), str):  # so is a relative folder: or npy: path
        from trainers.user_data import resolve_dataset

        values["dataset"] = resolve_dataset(values["dataset"])
    return make_config(values)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """gan-sweeper: which GAN loss and settings train stably, and how sure are we?"""


# ---------------------------------------------------------------------------- train
@click.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as one JSON "
              "object on the last stdout line.")
@tracking_uri_option("MLflow tracking URI (sqlite:///FILE or http://HOST:PORT).")
@click.option("--experiment", default="gan-sweeper-train", show_default=True,
              help="MLflow experiment to log into.")
@click.option("--no-track", is_flag=True, help="Do not log to MLflow.")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Save a checkpoint here at every evaluation.")
@click.option("--resume", is_flag=True, help="Continue from --checkpoint if it exists.")
@click.option("--samples-out", type=click.Path(dir_okay=False),
              help="Save the final generated samples (.npy) for `sweeper eval`.")
@click.option("--seeds", "n_seeds", type=int, default=1, show_default=True,
              help="Train seeds --seed .. --seed + K - 1 together, as one batched population "
              "where that pays; --json then holds a `seeds` list and the aggregates.")
@click.option("--smoke-test", is_flag=True, help="Tiny budget (seconds) for a quick check.")
@rule_options
def train(config_file, as_json, tracking_uri, experiment, no_track, checkpoint, resume,
          samples_out, n_seeds, smoke_test, **options) -> None:
    """Train a GAN (or K seeds of it) and report the final metrics (seed_success judged by the
    success rule)."""
    from sweeper.cli.train import run_single

    rule = rule_from_options(options)
    cfg = config_from_options(config_file, options, smoke_test)
    if resume and not checkpoint:
        raise UserError("--resume needs --checkpoint PATH (the file to continue from)")
    check_experiment_name(experiment)
    check_seeds("--seeds", n_seeds)
    final = run_single(cfg, tracking_uri=None if no_track else tracking_uri,
                       experiment=experiment, checkpoint=checkpoint, resume=resume,
                       samples_out=samples_out, rule=rule, seeds=n_seeds)
    if as_json:
        click.echo(json.dumps(final, sort_keys=True))
    elif n_seeds == 1:
        click.echo(format_metrics(final))
    else:
        for m in final["seeds"]:
            click.echo(f"seed {m['seed']}: {format_metrics(m)}")
        click.echo(f"{n_seeds - final[names.FAILED_SEEDS]:.0f}/{n_seeds} seeds succeeded "
                   f"in {final[names.TRAIN_SECONDS]:.1f} s of training")


# MLflow stores experiment names in a 500-character column.
MAX_EXPERIMENT_NAME = 500


def check_experiment_name(name: str) -> None:
    if not name.strip():
        raise UserError("--experiment must not be empty; give a name or leave the option out")
    if len(name) > MAX_EXPERIMENT_NAME:
        raise UserError(f"--experiment is {len(name)} characters long; MLflow takes at most "
                        f"{MAX_EXPERIMENT_NAME}")


# ---------------------------------------------------------------------------- eval
@click.command("eval")
@click.option("--dataset", required=True, help="Dataset the samples imitate.")
@click.option("--samples", "samples_path", required=True, type=click.Path(dir_okay=False),
              help=".npy array: N x 2 for 2D data, N x C x H x W for images.")
@click.option("--dataset-scale", type=float, default=None, help=FIELDS["dataset_scale"]
              .metadata["doc"])
@click.option("--data-root", default=None, help=FIELDS["data_root"].metadata["doc"])
@click.option("--fid-backend", type=click.Choice(FIELDS["fid_backend"].metadata["choices"]),
              default=None, help=FIELDS["fid_backend"].metadata["doc"])
@click.option("--json", "as_json", is_flag=True, help="Print metrics as one JSON object.")
@rule_options
def eval_cmd(dataset, samples_path, dataset_scale, data_root, fid_backend, as_json,
             **options) -> None:
    """Metrics for any array of samples, against the dataset's real distribution."""
    from sweeper.cli.train import evaluate_file
    from trainers.user_data import resolve_dataset

    rule = rule_from_options(options)
    values = {"dataset": resolve_dataset(dataset), "dataset_scale": dataset_scale,
              "data_root": data_root, "fid_backend": fid_backend}
    metrics = evaluate_file(samples_path, {k: v for k, v in values.items() if v is not None},
                            rule)
    click.echo(json.dumps(metrics, sort_keys=True) if as_json else format_metrics(metrics))


# ---------------------------------------------------------------------------- datasets
@click.command()
def datasets() -> None:
    """List the datasets the trainer knows."""
    from trainers.data import DATASETS, USER_DATASETS

    for spec in DATASETS.values():
        click.echo(f"{spec.name:<16} {spec.doc}")
    for name, doc in USER_DATASETS.items():
        click.echo(f"{name:<16} {doc}")


# ---------------------------------------------------------------------------- sweeps
SMOKE_SWEEP = {"num_samples": 2, "seeds": 2}


def _check_sweep_options(o: dict[str, Any], *, resume: bool) -> None:
    """`sweeper run`'s option values, checked before anything starts (one-line errors)."""
    from sweeper.tune.search import SEARCHES

    for key, low in (("num_samples", 1), ("max_concurrent", 0), ("reduction_factor", 2),
                     ("max_failures", 0), ("tpe_startup", 0), ("budget_steps", 0)):
        if o[key] < low:
            raise UserError(f"--{key.replace('_', '-')} must be at least {low}, got {o[key]}")
    if not resume:  # a resume trains the saved seeds
        check_seeds("--seeds", o["seeds"])
    cpus, gpus = o["cpus_per_trial"], o["gpus_per_trial"]
    if not (math.isfinite(cpus) and math.isfinite(gpus)):
        raise UserError("--cpus-per-trial and --gpus-per-trial must be finite numbers")
    if cpus <= 0 or gpus < 0:
        raise UserError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if not 0 < o["grace_fraction"] <= 1:
        raise UserError(f"--grace must be in (0, 1], got {o['grace_fraction']}")
    if o.get("fuse") is not None:
        from sweeper.tune.spaces import parse_fuse

        parse_fuse(o["fuse"])
    if o["search"] not in SEARCHES:
        raise UserError(f"--search must be one of {', '.join(SEARCHES)}, got {o['search']!r}")


def sweep_options(fn):
    """One `sweeper run` option per documented SweepOptions field (sweeper/tune/driver.py), with
    the dataclass's default: the defaults and docs live there only."""
    from sweeper.tune.driver import CLI_FIELDS

    for f in reversed(CLI_FIELDS):
        m = f.metadata
        flag = m["flag"] or "--" + f.name.replace("_", "-")
        if f.type == "bool":
            fn = click.option(flag, f.name, is_flag=True, default=f.default,
                              show_default="/" in flag, help=m["doc"])(fn)
        else:
            fn = click.option(flag, f.name, type=_CLICK_TYPES[str(f.type)], default=f.default,
                              show_default=f.default is not None, metavar=m["metavar"],
                              help=m["doc"])(fn)
    return fn


@click.command()
@click.option("--space", default="default", show_default=True,
              help="Shipped space name (see `sweeper spaces`) or path to a YAML file.")
@click.option("--experiment", default=None, help="Sweep name = MLflow experiment "
              "[default: SPACE-DATE-TIME]. Reuse it with --resume.")
@click.option("--sweep-dir", default="sweeps", show_default=True,
              type=click.Path(file_okay=False), help="Where Tune and Optuna keep sweep state "
              "(must be shared by all nodes of a cluster).")
@click.option("--resume", is_flag=True, help="Continue an interrupted sweep (--experiment, "
              "or the latest in --sweep-dir) with its saved options; only --address may "
              "change. Reads pickled state: only resume sweep directories you trust.")
@sweep_options
@_objective_option
@rule_options
@click.option("--smoke-test", is_flag=True, help="2 tiny trials: checks the whole pipeline.")
def run(space, experiment, sweep_dir, resume, objective, smoke_test, **options) -> int:
    """Sweep a search space: Ray Tune + Optuna (TPE or random) + ASHA, recorded in MLflow."""
    import dataclasses as dc
    import time
    from pathlib import Path

    from sweeper.tune import driver, marks, results_table
    from sweeper.tune.spaces import load_space
    from trainers.quality import RULE_FIELDS

    rule_opts = {k: options.pop(k) for k in RULE_FIELDS}
    _check_sweep_options(options, resume=resume)
    if experiment is not None:
        check_experiment_name(experiment)
    check_objective(objective)
    space_obj = load_space(space)
    rule = rule_from_options(rule_opts, space_obj.success)
    if smoke_test:
        for key in ("num_samples", "seeds"):
            options[key] = min(options[key], SMOKE_SWEEP[key])
        space_obj = dc.replace(space_obj, fixed={**space_obj.fixed, **SMOKE})
    sweep_root = Path(sweep_dir).resolve()
    if resume and experiment is None:
        experiment = driver.latest_sweep(sweep_root)
        if experiment is None:
            raise UserError(f"nothing to resume in {sweep_root}; pass --experiment NAME")
    experiment = experiment or f"{space_obj.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not resume and options["sampler_seed"] is None:
        # Drawn, printed and saved, so any sweep's sampler draws can be repeated (a resume
        # keeps it).
        import secrets

        options["sampler_seed"] = secrets.randbelow(2**31)
    opts = driver.SweepOptions(space=space_obj, name=experiment, sweep_dir=sweep_root,
                              command=driver.command_line(), rule=rule, objective=objective,
                              **options)
    if not resume:  # a resume prints the options it restored instead
        from trainers.data import describe_rule

        fixed = space_obj.fixed
        rule_text = describe_rule(rule, fixed.get("dataset"), fixed.get("fid_backend", "auto"))
        click.echo(f"sweep {experiment!r}: space {space_obj.name}, {opts.num_samples} "
                   f"settings x {opts.seeds} seeds, {opts.search} search (sampler seed "
                   f"{opts.sampler_seed}), objective {objective}; a seed succeeds with "
                   f"{rule_text}", err=True)
    if resume:
        note_ignored_options(click.get_current_context(), opts)
    try:
        rows = driver.run_sweep(opts, resume=resume)
    except driver.SweepInterrupted as e:
        if e.rows:
            click.echo(results_table.format_table(e.rows, top=TOP_ROWS))
        click.echo(f"\nsweep {experiment!r} interrupted ({e.signal_name or 'stop signal'}): "
                   f"{e.finished} of {e.num_samples} trials finished and nothing is lost; "
                   f"continue it with: {_resume_command(experiment, sweep_dir, opts.address)}",
                   err=True)
        return 130
    if resume:  # the sweep's own options, not this command's defaults
        opts = driver.restore_options(opts, driver.sweep_path(sweep_root, experiment))
        objective = opts.objective
    tie = "median FID" if objective == "fid" else "median seed_score"
    click.echo(f"\nBest settings of sweep {experiment!r} (objective = failed seeds + "
               f"m/(1+m), m = {tie}; lower is better):")
    click.echo(results_table.format_table(rows, top=TOP_ROWS))
    from sweeper.commands import sweeper_cmd
    from sweeper.track import store

    uri = store.absolute_uri(opts.tracking_uri)  # checked when the sweep started
    try:
        exp_id = store.experiment_id(store.client(uri), experiment, create=False)
        look = store.where_to_look(uri, exp_id)
    except Exception:  # noqa: BLE001 - a failing store: the closing line below says so
        look = f"The tracking store {short(uri)} cannot be read now."
    stable = sweeper_cmd("stable", "--experiment", experiment, *store.tracking_args(uri))
    shown = (f"the best {TOP_ROWS} of {len(rows)} trials above (all of them: results.md on "
             "the sweep's MLflow run, or `sweeper stable`)" if len(rows) > TOP_ROWS
             else f"{len(rows)} trials")
    # The seed fixes the sampler's draws; with trials at once, the order results reach TPE
    # in can still differ from run to run, so a repeat proposes the same first settings.
    seed = (f"\nRepeat this sweep: --sampler-seed {opts.sampler_seed} (the same sampler "
            "draws; with trials running at once, results may reach TPE in another order)"
            if opts.sampler_seed is not None else "")
    click.echo(f"\n{shown[0].upper()}{shown[1:]}. {look}\nStable settings across seeds: "
               f"{stable}{seed}")
    # The exit code must not say all is well when settings failed or results wait unsent.
    spool = driver.sweep_path(sweep_root, experiment) / "unsent"
    left = marks.undelivered(spool)
    if left:
        click.echo(f"error: {left} run record(s) could not reach the tracking store "
                   f"{short(uri)}; they are kept in {spool}, and "
                   f"`{_resume_command(experiment, sweep_dir, opts.address)}` delivers them once "
                   "the store works again", err=True)
    failed = results_table.failed_rows(rows)
    if failed:
        click.echo(f"error: {failed}", err=True)
    return 1 if left or failed else 0


# Rows of the ranked table `sweeper run` prints at its end.
TOP_ROWS = 10


def _resume_command(experiment: str, sweep_dir: str, address: str | None) -> str:
    from sweeper.commands import sweeper_cmd

    again = ["run", "--resume", "--experiment", experiment]
    if sweep_dir != "sweeps":
        again += ["--sweep-dir", sweep_dir]
    if address:
        again += ["--address", address]
    return sweeper_cmd(*again)


@click.command()
@tracking_uri_option("The SQLite store to serve (sqlite:///FILE).")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--experiment", default=None, help="Link straight to this sweep's runs view.")
def ui(tracking_uri, port, experiment) -> int:
    """Serve the MLflow UI for a SQLite tracking store on 127.0.0.1 (Ctrl-C stops it)."""
    from pathlib import Path

    from sweeper.track import store

    uri = store.check_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        raise UserError(f"{uri} is a tracking server, which serves its own UI: open it in a "
                        "browser")
    base = f"http://127.0.0.1:{port}"
    link = f"{base}/#/experiments"
    if experiment is not None:
        exp_id = store.experiment_id(store.client(uri), experiment, create=False)
        if exp_id is None:
            raise UserError(f"no experiment {short(experiment)!r} in {short(uri)}; see "
                            f"{link}")
        from sweeper.track.mlflow_view import ensure_view

        try:  # a sweep logged before views existed gets one now
            view = ensure_view(store.client(uri), exp_id)
        except Exception:  # noqa: BLE001 - a read-only store: the plain runs page
            view = False
        link = store.runs_view_url(uri, exp_id, base, view=view)
    return _serve([str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri",
                   uri, "--host", "127.0.0.1", "--port", str(port)], port,
                  f"MLflow UI for {uri} on {base} (Ctrl-C stops it); runs: {link}")


def _serve(command: list[str], port: int, say: str) -> int:
    """Run a local web server until it ends or Ctrl-C; its port is checked last, so a busy
    one costs nothing else."""
    import socket
    import subprocess

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise UserError(f"port {port} on 127.0.0.1 is in use (another `sweeper ui`, "
                            "`sweeper dashboard` or server?); pass --port") from None
    click.echo(say, err=True)
    proc = subprocess.Popen(command)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the usual way to stop it: not an error
        proc.terminate()
        proc.wait(timeout=30)
        return 0


@click.command()
@click.option("--experiment", required=True, help="Sweep name: its Optuna study is served.")
@click.option("--sweep-dir", default="sweeps", show_default=True,
              type=click.Path(file_okay=False), help="Where the sweep's folder is.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
def dashboard(experiment, sweep_dir, port) -> int:
    """Serve optuna-dashboard on the sweep's Optuna study, on 127.0.0.1 (Ctrl-C stops it).

    Optional: `pip install 'gan-sweeper[dashboard]'` (or `pip install optuna-dashboard`)."""
    import importlib.util
    from pathlib import Path

    from sweeper.tune import driver

    path = driver.sweep_path(Path(sweep_dir).resolve(), experiment)
    if not (path / driver.OPTIONS_FILE).exists():
        raise UserError(f"no sweep named {short(experiment)!r} in {short(sweep_dir)}; pass "
                        "the --sweep-dir it ran with")
    driver.check_study(path, experiment)  # read-only: a damaged study is one line
    exe = Path(sys.executable).with_name("optuna-dashboard")
    if importlib.util.find_spec("optuna_dashboard") is None or not exe.exists():
        raise UserError("optuna-dashboard is not installed; install it with `pip install "
                        "'gan-sweeper[dashboard]'` (or `pip install optuna-dashboard`)")
    url = f"http://127.0.0.1:{port}/dashboard/"
    return _serve([str(exe), f"sqlite:///{path / 'optuna.db'}", "--host", "127.0.0.1",
                   "--port", str(port)], port,
                  f"optuna-dashboard for sweep {experiment!r} on {url} (Ctrl-C stops it)")


def note_ignored_options(ctx: click.Context, opts) -> None:
    """Say which options given with --resume differ from the sweep's saved ones (and so are
    ignored), in one line. Silent when the sweep cannot be found: run_sweep says so."""
    from click.core import ParameterSource

    from sweeper.tune import driver
    from trainers.quality import RULE_FIELDS

    path = driver.sweep_path(opts.sweep_dir, opts.name)
    if not (path / driver.OPTIONS_FILE).exists():
        return
    try:
        saved = driver.restore_options(opts, path)
    except UserError:
        return  # run_sweep reports the damaged file
    given = {p.name: (p.opts[0], ctx.params[p.name]) for p in ctx.command.params
             if ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE,
                                                     ParameterSource.ENVIRONMENT)}
    ignored = []
    for name, (flag, value) in given.items():
        if name in driver.SAVED_FIELDS:  # options a resume takes as saved
            old = getattr(saved, name)
        elif name in RULE_FIELDS:
            old = getattr(saved.rule, name)
        elif name == "space":
            old = saved.space.name if value == saved.space.name else saved.space.source
        elif name == "smoke_test":
            old = None
        else:
            continue
        if value != old:
            ignored.append(f"{flag} {value}" + ("" if old is None else f" (saved: {old})"))
    if ignored:
        click.echo(one_line("note: --resume continues the sweep with its saved options; "
                            f"ignoring {', '.join(ignored)}"), err=True)


@click.command()
def spaces() -> None:
    """List the shipped search spaces and their parameters."""
    from sweeper.tune.spaces import SPACES_DIR, load_space, shipped_spaces

    for name in shipped_spaces():
        s = load_space(name)
        click.echo(f"{name}: {s.description}")
        fixed = ", ".join(f"{k}={v}" for k, v in s.fixed.items())
        click.echo(f"    fixed: {fixed or '-'}")
        for p in s.params:
            click.echo(f"    {p.describe()}")
    click.echo(f"(files in {SPACES_DIR})")


# Every command, listed once (as Optuna's cli.py does): `from sweeper.cli import cli` is the
# whole group, with no import needed for its side effects.
COMMANDS = (train, eval_cmd, datasets, run, ui, dashboard, spaces, stable, compare, report)
for _command in COMMANDS:
    cli.add_command(_command)


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click usage errors and our user errors exit 2 with one line."""
    # SIGTERM and SIGHUP stop any command like Ctrl-C does (`run` refines this while Tune
    # runs: sweeper/tune/interrupt.py), not with an abort and a stack dump.
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupt)
    try:
        rv = cli.main(args=argv, prog_name="sweeper", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        # One line, like every other input error, instead of click's usage block.
        command = e.ctx.command_path if e.ctx else "sweeper"
        click.echo(f"error: {one_line(e.format_message())} (see {command} --help)", err=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (UserError, ConfigError) as e:
        click.echo(f"error: {one_line(e)}", err=True)
        sys.exit(2)
    except OSError as e:
        # A file given on the command line that the checks up front let through (a name too
        # long for the filesystem, a folder where a file belongs): name it, don't dump.
        where = f" {short(str(e.filename))}:" if e.filename else ""
        click.echo(f"error: cannot use{where} {e.strerror or one_line(e)}; check the paths "
                   "given", err=True)
        sys.exit(2)
    except Exception as e:
        if _out_of_memory(e):
            # The estimate up front (trainers/memory.py) refuses what clearly cannot fit; an
            # estimate is not a guarantee, and other programs take memory too.
            from trainers.memory import SIZE_FIX

            click.echo(f"error: out of memory ({one_line(e)}); {SIZE_FIX}", err=True)
            sys.exit(2)
        cause = _database_error(e)
        if cause is None:
            raise
        # The checks up front catch damaged stores; this is the net for one damaged later.
        click.echo(f"error: a database failed ({one_line(cause)}); check the --tracking-uri "
                   "file and the sweep's optuna.db (damaged, read-only or locked)", err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)


def console() -> NoReturn:
    """The `sweeper` command: `main`, then an exit that skips the interpreter's teardown.

    Tearing down torch, Ray, MLflow and SQLAlchemy module by module took 1.5-2 s after a
    sweep had printed its last line, a tenth of a short sweep. What that teardown is for
    still happens, in CPython's order: other threads are joined, the atexit handlers run
    (logging, Ray, MLflow, weakref finalizers such as temporary folders), the output is
    flushed. Only object-by-object freeing, which the OS does at once, is skipped. Tests
    call `main` in-process instead."""
    try:
        main()
        code: Any = 0
    except SystemExit as e:
        code = e.code
    import atexit
    import os
    import threading

    # What Py_Finalize does first: the thread pools' exit hooks, then joining the threads
    # that are not daemons (a plain join of them all would wait on idle pool workers).
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is None:  # not CPython: the ordinary exit
        sys.exit(code)
    shutdown()
    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`sweeper ... | head`)
            pass
    os._exit(code or 0)


def _out_of_memory(e: BaseException) -> bool:
    """MemoryError, CUDA's OutOfMemoryError, or the CPU allocator's RuntimeError."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    return isinstance(e, RuntimeError) and any(
        w in str(e) for w in ("can't allocate memory", "not enough memory", "out of memory"))


def _database_error(e: BaseException) -> BaseException | None:
    """The SQLite error behind `e` (SQLAlchemy wraps it), if there is one."""
    import sqlite3

    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, sqlite3.Error):
            return e
        e = e.__cause__ or e.__context__
    return None

