"""A sweep on a real 2-node Ray cluster (`ray start`, token auth) logging to a real
`mlflow server` on 127.0.0.1. Everything is torn down by PID in the fixtures' finalizers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweeper.track import store, tags
from sweeper.track.metric_keys import history, metrics_of
from tests.procs import mlflow_server, ray_cluster
from trainers import names

pytestmark = pytest.mark.slow
SWEEPER = str(Path(sys.executable).with_name("sweeper"))
SPACE = {"fixed": {"dataset": "ring8", "steps": 40, "eval_every": 20, "eval_samples": 300,
                   "hidden": 16, "depth": 2, "batch_size": 64, "loss": "wgan-gp"},
         "params": {"gp_lambda": {"log_uniform": [0.1, 100]}, "n_critic": {"int": [1, 3]}}}
NUM = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as s:
        yield s


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(nodes=2, cpus_per_node=1) as c:
        yield c


def test_sweep_runs_on_both_nodes_and_logs_to_the_server(tmp_path, server, cluster):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    p = subprocess.run(
        [SWEEPER, "run", "--space", "space.yaml", "--experiment", "cluster-test",
         "--address", cluster.address, "--tracking-uri", server.uri, "--num-samples",
         str(NUM), "--seeds", "1", "--max-concurrent", "2", "--no-early-stop",
         "--sweep-dir", str(tmp_path / "sweeps")],
        cwd=tmp_path, env=cluster.env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    c = store.client(server.uri)
    exp = c.get_experiment_by_name("cluster-test")
    runs = c.search_runs([exp.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get(tags.TAG_KIND) == "trial"]
    seeds = [r for r in runs if r.data.tags.get(tags.TAG_KIND) == "seed"]
    assert len(trials) == NUM and len(seeds) == NUM
    node_ids = {r.data.tags[tags.TAG_NODE_ID] for r in trials}
    assert len(node_ids) == 2, f"trials ran on {node_ids}"
    for r in trials:
        assert r.data.params["loss"] == "wgan-gp" and "gp_lambda" in r.data.params
        assert names.OBJECTIVE in metrics_of(r)
        assert r.data.tags[tags.TAG_STATUS] == "finished"
    for r in seeds:
        assert [m.step for m in history(c, r.info.run_id, names.FID)] == [20, 40]
        arts = [a.path for a in c.list_artifacts(r.info.run_id, "plots")]
        assert arts, "sample plots must reach the server's artifact store"


def test_driver_without_the_token_is_refused(cluster):
    env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_TOKEN"}
    env["RAY_AUTH_TOKEN"] = "0" * 32  # a wrong token (the right one is a fresh random hex)
    code = "import ray,sys; ray.init(address=sys.argv[1]); print('CONNECTED')"
    p = subprocess.run([sys.executable, "-c", code, cluster.address], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "CONNECTED" not in p.stdout


@pytest.mark.parametrize("token", ["wrong", "missing"])
def test_sweeper_without_the_token_gets_one_line_naming_it(tmp_path, cluster, token):
    """Reliability round 3, row 5: a wrong or missing token used to print ~20 lines of
    Ray's InvalidAuthToken retries and then blame the address."""
    env = {**cluster.env, "RAY_AUTH_TOKEN": "0" * 32, "HOME": str(tmp_path)}
    if token == "missing":
        env = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    p = subprocess.run([SWEEPER, "run", "--smoke-test", "--address", cluster.address],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "InvalidAuthToken" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) <= 3, p.stderr  # the sweep's header line, Ray's one notice, the error
    error = lines[-1]
    assert error.startswith("error: ") and "RAY_AUTH_TOKEN" in error, error
    assert "~/.ray/auth_token on its head node" in error
    assert ("has no Ray auth token" in error) == (token == "missing")
