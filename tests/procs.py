"""The real processes tests start (mlflow server, ray start clusters, sweeper ui); they live
in benchmarks/_procs.py, which the load and overhead benchmarks use too."""

from benchmarks._procs import (  # noqa: F401 - re-exported for the tests
    BIN,
    MlflowServer,
    RayCluster,
    free_port,
    mlflow_server,
    ray_cluster,
    stop_group,
    sweeper_ui,
    wait_healthy,
)
