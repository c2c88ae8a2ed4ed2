"""`sweeper`: the command line. User errors print one line and exit 2, never a traceback."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click

from sweeper.errors import UserError, one_line
from sweeper.tracking import DEFAULT_TRACKING_URI
from trainers import names
from trainers.config import FIELDS, ConfigError, describe_range, load_config_file, make_config

# --smoke-test shrinks the budget to seconds while keeping every code path.
SMOKE = {"steps": 40, "eval_every": 20, "eval_samples": 500}

_CLICK_TYPES = {"int": int, "float": float, "str": str}


def config_options(fn):
    """One CLI option per TrialConfig field (`--gp-lambda` ...), plus `--config FILE.yaml`.

    Options default to None, meaning "not given", so the file and the loss's reference
    defaults apply; an option given on the command line overrides the file.
    """
    for f in reversed(dataclasses.fields(make_config())):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['doc']} [{describe_range(f)}]"
        if str(f.type) == "bool":
            fn = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None,
                              help=help_text)(fn)
        else:
            fn = click.option(flag, f.name, type=_CLICK_TYPES[str(f.type)], default=None,
                              help=help_text, metavar=str(f.type).upper())(fn)
    return click.option("--config", "config_file", type=click.Path(dir_okay=False),
                        help="YAML file of config fields (e.g. from `sweeper stable "
                        "--export`); command-line options override it.")(fn)


def config_from_options(config_file: str | None, options: dict[str, Any],
                        smoke_test: bool = False):
    values = load_config_file(config_file) if config_file else {}
    values.update({k: v for k, v in options.items() if k in FIELDS and v is not None})
    if smoke_test:
        values.update(SMOKE)
    return make_config(values)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """gan-sweeper: which GAN loss and settings train stably, and how sure are we?"""


# ---------------------------------------------------------------------------- train
@cli.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as one JSON "
              "object on the last stdout line.")
@click.option("--tracking-uri", default=DEFAULT_TRACKING_URI, show_default=True,
              help="MLflow tracking URI (sqlite:///FILE or http://HOST:PORT).")
@click.option("--experiment", default="gan-sweeper-train", show_default=True,
              help="MLflow experiment to log into.")
@click.option("--no-track", is_flag=True, help="Do not log to MLflow.")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Save a checkpoint here at every evaluation.")
@click.option("--resume", is_flag=True, help="Continue from --checkpoint if it exists.")
@click.option("--samples-out", type=click.Path(dir_okay=False),
              help="Save the final generated samples (.npy) for `sweeper eval`.")
@click.option("--smoke-test", is_flag=True, help="Tiny budget (seconds) for a quick check.")
def train(config_file, as_json, tracking_uri, experiment, no_track, checkpoint, resume,
          samples_out, smoke_test, **options) -> None:
    """Train one GAN and report its final metrics."""
    from sweeper.single import run_single

    cfg = config_from_options(config_file, options, smoke_test)
    if resume and not checkpoint:
        raise UserError("--resume needs --checkpoint PATH (the file to continue from)")
    final = run_single(cfg, tracking_uri=None if no_track else tracking_uri,
                       experiment=experiment, checkpoint=checkpoint, resume=resume,
                       samples_out=samples_out)
    if as_json:
        click.echo(json.dumps(final, sort_keys=True))
    else:
        click.echo(format_metrics(final))


def format_metrics(m: dict[str, float]) -> str:
    """One human-readable line of the headline metrics."""
    parts = [f"step {int(m.get(names.STEP, 0))}"]
    if names.MODES_COVERED in m:
        parts.append(f"modes {int(m[names.MODES_COVERED])}/{int(m[names.NUM_MODES])}")
    for key, fmt in ((names.HQ_FRACTION, ".3f"), (names.MODE_KL, ".3f"), (names.FID, ".4g"),
                     (names.KID, ".4g"), (names.W_DISTANCE, ".4g"), (names.GRAD_NORM, ".3g")):
        if key in m:
            parts.append(f"{key} {m[key]:{fmt}}")
    if m.get(names.DIVERGED):
        parts.append("DIVERGED")
    return "  ".join(parts)


# ---------------------------------------------------------------------------- eval
@cli.command("eval")
@click.option("--dataset", required=True, help="Dataset the samples imitate.")
@click.option("--samples", "samples_path", required=True, type=click.Path(dir_okay=False),
              help=".npy array: N x 2 for 2D data, N x C x H x W for images.")
@click.option("--dataset-scale", type=float, default=None, help=FIELDS["dataset_scale"]
              .metadata["doc"])
@click.option("--data-root", default=None, help=FIELDS["data_root"].metadata["doc"])
@click.option("--json", "as_json", is_flag=True, help="Print metrics as one JSON object.")
def eval_cmd(dataset, samples_path, dataset_scale, data_root, as_json) -> None:
    """Metrics for any array of samples, against the dataset's real distribution."""
    from sweeper.single import evaluate_file

    values = {"dataset": dataset, "dataset_scale": dataset_scale, "data_root": data_root}
    metrics = evaluate_file(samples_path, {k: v for k, v in values.items() if v is not None})
    click.echo(json.dumps(metrics, sort_keys=True) if as_json else format_metrics(metrics))


# ---------------------------------------------------------------------------- datasets
@cli.command()
def datasets() -> None:
    """List the datasets the trainer knows."""
    from trainers.data import DATASETS

    for spec in DATASETS.values():
        click.echo(f"{spec.name:<16} {spec.doc}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click usage errors and our user errors exit 2 with one line."""
    try:
        rv = cli.main(args=argv, prog_name="sweeper", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (UserError, ConfigError) as e:
        click.echo(f"error: {one_line(e)}", err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)

