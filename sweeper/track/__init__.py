"""MLflow: the run store, the reader of sweeps, and every tag name."""
