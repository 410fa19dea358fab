#!/usr/bin/env bash
# tools/bf16_loglik.sh — does bf16 training cost model quality? Trains 784x500 CD-1
# RBMs on Fashion-MNIST (or the MNIST folder given as $1) with --precision fp32 and
# bf16 from the same seeds 1 and 2 (the seed-to-seed spread is the "noise" a precision
# difference is compared with), and scores each by AIS test
# log-likelihood (rbm_eval loglik, test images binarised stochastically with seed 1).
#
#   bash tools/bf16_loglik.sh [MNIST_DIR]    (env: RBM_NP=2, EPOCHS=5, AIS_RUNS=300)
#
# Outputs in runs/bf16/: <name>.h5, <name>.log, <name>-loglik.json and the table.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
rbm_mpi_env
src="${1:-/usr/share/datasets/fashion-mnist}"
out="${RBM_OUT:-$RBM_ROOT/runs/bf16}"
np="${RBM_NP:-2}"
epochs="${EPOCHS:-5}"
runs="${AIS_RUNS:-300}"
mkdir -p "$out"
data="$out/data.h5"
[ -f "$data" ] || "$RBM_BUILD/mnist2h5" "$src" "$data"
B="$RBM_BUILD"
common=(--hidden 500 --epochs "$epochs" --batch-size 100 --binarize stochastic --progress never)
echo "| model | precision | seed | samples/s (last epoch) | test log-lik (AIS, nats) | log Z ± 3 s.e. | ESS (of $runs) |"
echo "|---|---|---|---|---|---|---|"
for cfg in "fp32-s1:fp32:1" "bf16-s1:bf16:1" "fp32-s2:fp32:2" "bf16-s2:bf16:2"; do
  IFS=: read -r name prec seed <<<"$cfg"
  [ -f "$out/$name.h5" ] || mpirun -np "$np" "$B/rbm_dist" --data "$data" "${common[@]}" \
    --precision "$prec" --seed "$seed" --checkpoint "$out/$name.h5" >"$out/$name.log"
  mpirun -np "$np" "$B/rbm_eval" loglik "$out/$name.h5" "$data" --binarize stochastic \
    --runs "$runs" --json | tail -n1 >"$out/$name-loglik.json"
  j() { grep -o "\"$1\": *[-0-9.e+]*" "$out/$name-loglik.json" | head -n1 | sed 's/.*: *//'; }
  rate=$(grep -o '[0-9]* samples/s' "$out/$name.log" | tail -n1)
  printf '| %s | %s | %s | %s | %.2f | %.2f ± %.2f | %.1f |\n' "$name" "$prec" "$seed" "$rate" \
    "$(j mean_loglik)" "$(j log_z)" "$(awk "BEGIN{print 3*$(j log_z_stderr)}")" "$(j ess)"
done
