"""Orchestration around the pure trainer: CLI, Ray Tune wiring, MLflow tracking, analysis."""
