"""Measurements behind every published number; run each as `python -m benchmarks.NAME`."""
