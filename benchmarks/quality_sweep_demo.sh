#!/usr/bin/env bash
# The quality rule on a real sweep (docs/results.md, "The quality rule"): the ring8 WGAN-GP
# sweep under the default objective, its ranking re-ranked by FID, the top pick exported and
# re-trained on 10 fresh seeds, and the report. Run from an empty folder (it writes
# ./mlflow.db, ./sweeps, ./report and the logs there):
#     bash /path/to/benchmarks/quality_sweep_demo.sh [EXPORT.yaml]
# About 30 minutes on 2 CPU cores.
set -euo pipefail
export RAY_USAGE_STATS_ENABLED=0
name=ring8-gp-quality
export_to=${1:-ring8-wgan-gp-quality.yaml}
sweeper run --space ring8-wgan-gp --experiment "$name" --num-samples 16 --seeds 3 \
    --sampler-seed 0 > sweep.log 2>&1
sweeper stable --experiment "$name" --export "$export_to" > stable_quality.txt
sweeper stable --experiment "$name" --objective fid > stable_fid.txt
sweeper stable --experiment "$name" --confirm 10 --top 1 > stable_confirmed.txt 2> confirm.log
sweeper stable --experiment "$name" --json > stable_confirmed.json
sweeper report --experiment "$name" --out report > report.log
tail -n 20 sweep.log
