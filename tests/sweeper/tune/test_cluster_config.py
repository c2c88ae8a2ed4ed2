"""cluster.yaml is a valid Ray cluster-launcher config and keeps token auth on."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIG = Path(__file__).resolve().parents[3] / "cluster.yaml"


def test_cluster_yaml_passes_rays_own_schema():
    cfg = yaml.safe_load(CONFIG.read_text())
    validate_config(prepare_config(cfg))  # raises on any schema error


def test_every_ray_start_keeps_token_auth_on():
    text = CONFIG.read_text()
    cfg = yaml.safe_load(text)
    assert "disabled" not in text.lower()
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    for cmd in (c for c in starts if "ray start" in c):
        assert "RAY_AUTH_MODE=token" in cmd and "RAY_AUTH_TOKEN=" in cmd, cmd
    assert "~/.ray/auth_token" in cfg["file_mounts"]


def test_mlflow_server_binds_to_a_private_address_not_all_interfaces():
    cfg = yaml.safe_load(CONFIG.read_text())
    server = " ".join(cfg["head_setup_commands"])
    assert "mlflow server" in server and "0.0.0.0" not in server
