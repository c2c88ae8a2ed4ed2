"""Hostile command lines: hypothesis drives every command's options with values a user (or a
script gone wrong) produces -- NaN, infinities, zero, negatives, huge numbers, empty, very
long and unicode strings, and paths to a directory, a binary file, /proc, a folder that
cannot be created or a missing one. Each command must answer with exit 0 or 2, never a
traceback, within 30 s; an error in one line and under 2 KB in all, and no answer echoes
a 5,000-character value whole.

The commands run in this process (`sweeper.cli.main`), which makes hundreds of examples
affordable; the subprocess tests elsewhere check the same exits from a real shell. Commands
that would legitimately train for long are kept short by their base arguments: `train` runs
`--smoke-test`, `run` points at a Ray address where nothing listens (so a fully valid sweep
ends in one "cannot reach" line after every other check), and `stable`/`compare`/`report`
read a tiny real sweep made once for the module. A value a strategy draws always overrides
the base (click keeps an option's last occurrence).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sweeper.cli import main
from sweeper.errors import MAX_ERROR_CHARS
from trainers.config import make_config
from trainers.data import build_dataset

pytestmark = pytest.mark.slow
ANSWER_WITHIN_S = 30
MAX_OUTPUT = 2048
SWEEP = "fuzz-sweep"

NUMBERS = ["nan", "-nan", "inf", "-inf", "0", "-0", "-1", "-7.5", "0.5", "1e-300", "1e308",
           "-1e308", "1e30", "99999999999999999999", "3", "0x10", "1_0", "٣"]
STRINGS = ["", " ", "x" * 5000, "ünïcødé ☃ 🙂", "'\"; DROP TABLE runs; --", "../..", "-",
           "a\nb", "%s%n", "${HOME}", "NaN", "None", "true", "ring8", "cuda:7", "sqlite:///"]
PATH_KINDS = ["dir", "binary", "proc", "proc_file", "uncreatable", "missing", "yaml_list",
              "empty"]


BUSY = socket.socket()  # a port `ui` finds in use
BUSY.bind(("127.0.0.1", 0))
BUSY.listen()


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in the CLI eats it."""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Files of every hostile kind, a valid samples file, and one tiny finished sweep."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    (root / "a-dir").mkdir()
    (root / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "empty.txt").write_text("")
    real = build_dataset(make_config({"dataset": "ring8"}), torch.device("cpu"))
    np.save(root / "samples.npy", real.sample(500, torch.Generator().manual_seed(0)).numpy())
    uri = f"sqlite:///{root}/mlflow.db"
    space = {"fixed": {"dataset": "ring8", "loss": "wgan-gp", "steps": 4, "eval_every": 2,
                       "eval_samples": 200, "hidden": 8, "depth": 1, "batch_size": 32},
             "params": {"gp_lambda": {"log_uniform": [1, 10]}}}
    (root / "space.yaml").write_text(yaml.safe_dump(space))
    p = subprocess.run([str(Path(sys.executable).with_name("sweeper")), "run", "--space",
                        "space.yaml", "--experiment", SWEEP, "--num-samples", "2", "--seeds",
                        "2", "--no-early-stop", "--tracking-uri", uri], cwd=root,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert p.returncode == 0, p.stderr[-3000:]
    # Relative hostile values ("ring8", "../..", "a\nb") become files and folders wherever
    # the commands run: here, two levels below the fixture's folder, never the checkout.
    here, before = root / "cwd" / "here", os.getcwd()
    here.mkdir(parents=True)
    os.chdir(here)
    try:
        yield root
    finally:
        os.chdir(before)


def path_value(root: Path, kind: str) -> str:
    return {"dir": str(root / "a-dir"), "binary": str(root / "binary.bin"),
            "proc": "/proc", "proc_file": "/proc/version",
            "uncreatable": "/proc/gan-sweeper-fuzz/out.x",
            "missing": str(root / "no" / "such" / "file.x"),
            "yaml_list": str(root / "list.yaml"), "empty": str(root / "empty.txt")}[kind]


# Each command: its base arguments (a quick, valid call) and its options by value kind.
def commands(root: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    uri = f"sqlite:///{root}/mlflow.db"
    number = "number"
    text = "string"
    path = "path"
    flag = "flag"
    from sweeper.cli import cli
    from trainers.config import FIELDS

    train_opts = {"--" + f.replace("_", "-"): number if FIELDS[f].type in ("int", "float")
                  else text for f in FIELDS if FIELDS[f].type != "bool"}
    train_opts.update({"--data-root": path, "--config": path, "--checkpoint": path,
                       "--samples-out": path, "--tracking-uri": text, "--experiment": text,
                       "--seeds": number, "--min-coverage": number, "--min-mode-share": number,
                       "--min-hq-ratio": number, "--json": flag, "--resume": flag,
                       "--no-track": flag, "--download": flag})
    rule = {"--min-coverage": number, "--min-mode-share": number, "--min-hq-ratio": number}
    analysis = {"--experiment": text, "--tracking-uri": text, "--min-seeds": number,
                "--objective": text, "--json": flag}
    table = {
        "train": (["train", "--smoke-test", "--tracking-uri", uri, "--experiment", "fuzz-train"],
                  train_opts),
        "eval": (["eval", "--dataset", "ring8", "--samples", str(root / "samples.npy")],
                 {"--dataset": text, "--samples": path, "--dataset-scale": number,
                  "--data-root": path, "--json": flag, **rule}),
        "run": (["run", "--smoke-test", "--space", str(root / "space.yaml"), "--address",
                 "127.0.0.1:1", "--sweep-dir", str(root / "sweeps"), "--tracking-uri", uri],
                {"--space": path, "--experiment": text, "--num-samples": number,
                 "--max-concurrent": number, "--seeds": number, "--cpus-per-trial": number,
                 "--gpus-per-trial": number, "--tracking-uri": text, "--sweep-dir": path,
                 "--address": text, "--grace": number, "--reduction-factor": number,
                 "--max-failures": number, "--search": text, "--sampler-seed": number,
                 "--objective": text, "--resume": flag, "--no-early-stop": flag,
                 "--separate-seeds": flag, **rule}),
        "stable": (["stable", "--experiment", SWEEP, "--tracking-uri", uri],
                   {**analysis, "--export": path, "--confirm": number, "--top": number,
                    "--smoke-test": flag}),
        "compare": (["compare", "--experiment", SWEEP, "--experiment", SWEEP,
                     "--tracking-uri", uri], {**analysis, "--out": path}),
        "report": (["report", "--experiment", SWEEP, "--tracking-uri", uri, "--out",
                    str(root / "report"), "--sweep-dir", str(root / "sweeps")],
                   {**analysis, "--out": path, "--sweep-dir": path}),
        # `ui` serves until stopped: its base port is held busy by this module, so a call
        # that passes every other check ends in one "port ... in use" line. --port itself is
        # not fuzzed (a valid port would start a real server).
        "ui": (["ui", "--tracking-uri", uri, "--port", str(BUSY.getsockname()[1])],
               {"--tracking-uri": text, "--experiment": text}),
        # `dashboard` serves too: the same busy port ends a call that passes every check.
        "dashboard": (["dashboard", "--experiment", SWEEP, "--sweep-dir", str(root / "sweeps"),
                       "--port", str(BUSY.getsockname()[1])],
                      {"--experiment": text, "--sweep-dir": path}),
        "datasets": (["datasets"], {}),
        "spaces": (["spaces"], {}),
    }
    assert set(table) == set(cli.commands), "a new command needs a fuzz entry"
    return table


def draw_value(data, root: Path, kind: str) -> str | None:
    if kind == "flag":
        return None
    pool = {"number": NUMBERS, "string": [*STRINGS, *NUMBERS]}.get(kind)
    if kind == "path":
        choice = data.draw(st.sampled_from([*PATH_KINDS, "string"]))
        if choice != "string":
            return path_value(root, choice)
        pool = STRINGS
    if kind == "string" and data.draw(st.booleans()):  # a URI built around a hostile path
        return "sqlite:///" + path_value(root, data.draw(st.sampled_from(PATH_KINDS)))
    return data.draw(st.sampled_from(pool))


def _alarm(signum, frame):
    raise Hang


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 800)), deadline=None,
          derandomize=not os.environ.get("FUZZ_RANDOM"), database=None,
          phases=(Phase.explicit, Phase.generate), report_multiple_bugs=False,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_command_answers_hostile_options_in_one_line(world, capfd, data):
    table = commands(world)
    name = data.draw(st.sampled_from(sorted(table)))
    base, options = table[name]
    argv = list(base)
    if options:
        for opt in data.draw(st.lists(st.sampled_from(sorted(options)), min_size=1,
                                      max_size=3, unique=True)):
            value = draw_value(data, world, options[opt])
            argv += [opt] if value is None else [opt, value]
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(ANSWER_WITHIN_S)
    try:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
    except Hang:
        pytest.fail(f"no answer within {ANSWER_WITHIN_S} s: sweeper {argv!r}")
    finally:
        signal.alarm(0)
        for s, h in saved.items():
            signal.signal(s, h)
    out, err = capfd.readouterr()
    code = exit_.value.code
    shown = f"sweeper {' '.join(a[:60] for a in argv)}\n--- stderr:\n{err[-1500:]}"
    assert code in (0, 2), f"exit {code}: {shown}"
    assert "Traceback" not in out + err, shown
    if code == 2:
        assert len((out + err).encode()) < MAX_OUTPUT, f"{len(out + err)} bytes: {shown}"
    for value in argv[len(base):]:  # a listing or results table may be long; an echo not
        assert len(value) <= MAX_ERROR_CHARS or value not in out + err, f"echoed: {shown}"
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, shown
