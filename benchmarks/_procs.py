"""Real servers for tests: an `mlflow server` and a multi-node `ray start` cluster on this
machine. Each is started in its own session (process group) and torn down by that group's
PID -- SIGTERM, then SIGKILL -- so a test never touches processes it did not start."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a process started with start_new_session=True and everything in its group."""
    if proc.poll() is None or _group_alive(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.time() + grace
        while time.time() < deadline and _group_alive(proc.pid):
            time.sleep(0.25)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies still count for killpg(0); look for a live member instead.
    import psutil

    return any(p.info["status"] != psutil.STATUS_ZOMBIE
               for p in psutil.process_iter(["pid", "status"])
               if _pgid(p.info["pid"]) == pgid)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _popen(args: list[str], log: Path, env: dict[str, str],
           cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True, cwd=cwd)


def wait_healthy(base: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0,
                 path: str = "/health") -> None:
    """Wait until the server at `base` answers `path` (MLflow's /health); fail with the end
    of its log if it exits first or takes longer than `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(base + path, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"no answer from {base} within {timeout:.0f} s: "
                               f"{log.read_text()[-2000:]}")
        time.sleep(0.5)


@contextmanager
def sweeper_ui(root: Path, uri: str, experiment: str | None = None,
               env: dict[str, str] | None = None):
    """A real `sweeper ui` (a real `mlflow ui`) on a free port; yields (process, base URL,
    log) once it answers, and stops its process group on the way out."""
    port = free_port()
    log = root / "ui.log"
    args = [str(BIN / "sweeper"), "ui", "--tracking-uri", uri, "--port", str(port)]
    proc = _popen(args + (["--experiment", experiment] if experiment else []), log,
                  env if env is not None else dict(os.environ), cwd=root)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc, log)
        yield proc, base, log
    finally:
        stop_group(proc)


@dataclass
class MlflowServer:
    uri: str
    port: int
    root: Path
    log: Path
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> MlflowServer:
        args = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", f"sqlite:///{self.root}/server.db",
                "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1"]
        self.proc = _popen(args, self.log, dict(os.environ))
        wait_healthy(self.uri, self.proc, self.log, timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)


@contextmanager
def mlflow_server(root: Path):
    port = free_port()
    server = MlflowServer(f"http://127.0.0.1:{port}", port, root, root / "mlflow-server.log")
    try:
        yield server.start()
    finally:
        server.stop()


@dataclass
class RayCluster:
    address: str
    token: str
    temp_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """What every process of this cluster (and each driver) needs: the auth token."""
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                "RAY_USAGE_STATS_ENABLED": "0"}

    def add_worker(self, cpus: int = 1) -> subprocess.Popen:
        log = self.temp_dir.with_name(self.temp_dir.name + f"-worker{len(self.procs)}.log")
        p = _popen([str(BIN / "ray"), "start", "--address", self.address, "--num-cpus",
                    str(cpus), "--block"], log, self.env)
        self.procs.append(p)
        return p

    def wait_for_nodes(self, n: int, timeout: float = 90.0) -> None:
        code = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                "print(sum(1 for x in ray.nodes() if x['Alive']))")
        deadline = time.time() + timeout
        while time.time() < deadline:
            p = subprocess.run([sys.executable, "-c", code, self.address], env=self.env,
                               capture_output=True, text=True, timeout=60)
            if p.returncode == 0 and p.stdout.strip().splitlines()[-1] == str(n):
                return
            time.sleep(1)
        raise RuntimeError(f"Ray cluster never reached {n} nodes")

    def head_node_id(self) -> str:
        code = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                "print([n['NodeID'] for n in ray.nodes() if n['Alive'] and "
                "'node:__internal_head__' in n['Resources']][0])")
        p = subprocess.run([sys.executable, "-c", code, self.address], env=self.env,
                           capture_output=True, text=True, timeout=60, check=True)
        return p.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop_group(p)


@contextmanager
def ray_cluster(nodes: int = 2, cpus_per_node: int = 1):
    """A head plus (nodes - 1) workers started with `ray start`, token auth on."""
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: unix socket paths
    cluster = RayCluster(f"127.0.0.1:{port}", secrets.token_hex(16), temp_dir)
    passed = False
    try:
        head_log = temp_dir.with_name(temp_dir.name + "-head.log")
        cluster.procs.append(_popen(
            [str(BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus",
             str(cpus_per_node), "--include-dashboard=false", "--temp-dir", str(temp_dir),
             "--block"], head_log, cluster.env))
        for _ in range(nodes - 1):
            cluster.add_worker(cpus_per_node)
        cluster.wait_for_nodes(nodes)
        yield cluster
        passed = True
    finally:
        cluster.stop()
        if passed:  # keep the session logs of a cluster whose block raised, for diagnosis
            shutil.rmtree(temp_dir, ignore_errors=True)
            for log in temp_dir.parent.glob(temp_dir.name + "-*.log"):
                log.unlink(missing_ok=True)
