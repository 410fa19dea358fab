#!/bin/bash
# tests/slurm/test_sweep.sh BIN_DIR [SOURCE_DIR]
#
# slurm/sweep.sh on a throw-away single-node Slurm cluster (cluster.sh), scaled down:
# HIDDEN="16 24", 4 tasks per training job (`--ntasks-per-node=4` overriding the script's
# 8, so both trainings fit on the 8-CPU node at once), 2 epochs. Asserts the dependency chain convert -> 2 trainings -> summary all COMPLETED,
# each run reports 4 ranks and left a valid model of its size, and summary.txt has one
# line per run. Exit 77 (ctest SKIP) when Slurm is not installed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${1:?usage: test_sweep.sh BIN_DIR [SOURCE_DIR]}
src=${2:-$(cd "$here/../.." && pwd)}
# shellcheck source=cluster.sh
source "$here/cluster.sh"
# shellcheck source=checks.sh
source "$here/checks.sh"

cluster_test_setup "$bin_dir"  # cluster up, cd into $CLUSTER_DIR/work, mnist/ written

SWEEP_OPTION=--hidden SWEEP_VALUES="16 24" SBATCH_OPTS="--ntasks-per-node=4" \
  bash "$src/slurm/sweep.sh" mnist data/data.h5 sweep --epochs 2 --batch-size 50 --seed 5 \
    --monitor-size 100 >sweep.out 2>&1 || { cat sweep.out >&2; die "sweep.sh failed"; }
cat sweep.out >&2
mapfile -t ids < <(sed -n 's/.*job \([0-9][0-9]*\).*/\1/p' sweep.out)
((${#ids[@]} == 4)) || die "sweep.sh submitted ${#ids[@]} jobs, expected 4 (convert, 2 trainings, summary)"

for id in "${ids[@]}"; do
  read -r st ec < <(wait_job_done "$id" 90)
  log "job $id ($(job_field "$id" JobName)): $st exit $ec"
  [[ $st == COMPLETED && $ec == 0:0 ]] || { cat sweep/*.out >&2; die "job $id: $st $ec"; }
done

for h in 16 24; do
  out=$(ls sweep/hidden-$h-*.out)
  grep -v '^rbm_dist.sbatch:' "$out" | grep -q '\b4 ranks\b' || { cat "$out" >&2; die "$out: no '4 ranks'"; }
  check_model "sweep/hidden-$h/model.h5" 784 "$h"
done
n=$(grep -c '"epoch": 2' sweep/summary.txt)
((n == 2)) || { cat sweep/summary.txt >&2; die "summary.txt: $n runs at epoch 2, expected 2"; }
# Ranked: the first run has the highest last validation pseudo-log-likelihood.
mapfile -t pll < <(sed -n 's/.*"pseudo_loglik_valid": \([-0-9.e+]*\).*/\1/p' sweep/summary.txt)
((${#pll[@]} == 2)) || { cat sweep/summary.txt >&2; die "summary.txt: no pseudo_loglik_valid"; }
awk -v a="${pll[0]}" -v b="${pll[1]}" 'BEGIN { exit !(a >= b) }' ||
  { cat sweep/summary.txt >&2; die "summary.txt is not ranked best first"; }
head -n 2 sweep/summary.txt | tail -n 1 | grep -q '^1 ' || { cat sweep/summary.txt >&2; die "no rank column"; }
log "PASS: sweep convert -> h16, h24 (4 ranks each) -> summary (${SECONDS}s)"
