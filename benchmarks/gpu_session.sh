#!/usr/bin/env bash
# Issue 15's GDPP-budget evidence (docs/results.md, section 1.4) in one prepared run, for a
# session that is lent a GPU, as a check of the CPU numbers on another device: the 30 fresh
# seeds of each recommended setting (section 1.5; on the CPU, six populations per setting,
# over three sessions), the 10-seed rows (WGAN-GP at the reference defaults and the two
# recommended settings) and the budget curves (1k, 3k, 10k, 25k), all at GDPP's networks
# and budget. (The stacked-digits row at 30,000 steps was measured on the CPU:
# docs/results.md, section 2.)
#
#     bash benchmarks/gpu_session.sh OUTDIR            # on the GPU machine, repo root
#     DEVICE=cpu bash benchmarks/gpu_session.sh OUTDIR --smoke-test   # checks the script here
#
# Every run is cached in OUTDIR/cache (a population still training saves its state every
# 1,000 steps), and each finished step writes OUTDIR/<step>.md. A device command is capped at
# 10 minutes: run it again with the same OUTDIR (carried back) and it skips the finished steps
# and resumes the cut one. The steps go in order of importance. The cache key holds the
# device, so nothing here reuses the CPU results in docs/cache/coverage.
set -uo pipefail
out=${1:?usage: gpu_session.sh OUTDIR [extra benchmark options, e.g. --smoke-test]}
shift
py=${PYTHON:-python}
rec_ring=benchmarks/recommended/ring8-wgan-gp-quality.yaml
rec_grid=benchmarks/recommended/grid25-wgan-gp.yaml
common=(--protocol gdpp --device "${DEVICE:-cuda}" --cache "$out/cache"
        --workers "${WORKERS:-4}" "$@")
mkdir -p "$out/cache"

step() {  # step NAME MODULE ARGS...: run once; a finished step is not run again
    local name=$1 module=$2 t0=$SECONDS rc
    shift 2
    if [[ -f $out/$name.md ]]; then echo "$name: finished earlier"; return 0; fi
    "$py" -m "$module" "$@" --out "$out/$name.partial" > "$out/$name.log" 2>&1
    rc=$?
    if ((rc == 0)); then mv "$out/$name.partial" "$out/$name.md"; fi
    echo "$name: exit $rc after $((SECONDS - t0)) s (log: $out/$name.log)"
    return $rc
}

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
step fresh30 benchmarks.mode_coverage "${common[@]}" --datasets ring8,grid25 --losses '' \
    --seed-start 100 --seeds 30 --recommended "$rec_ring" --recommended "$rec_grid" || exit 1
step rows benchmarks.mode_coverage "${common[@]}" --datasets ring8,grid25 --losses wgan-gp \
    --recommended "$rec_ring" --recommended "$rec_grid" || exit 1
step curves benchmarks.budget_curves "${common[@]}" --datasets ring8,grid25 --losses wgan-gp \
    --recommended "$rec_ring" --recommended "$rec_grid" --budgets 1000,3000,10000,25000 \
    --plot "$out/budget_curves_gdpp.png" || exit 1
echo "all steps finished: $out/{rows,fresh30,curves}.md"
