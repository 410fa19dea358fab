#!/usr/bin/env bash
# tools/results.sh — reproduces the README's results table on Fashion-MNIST (or the
# MNIST folder given as $1): trains 784x500 RBMs with CD-1, CD-10, PCD and PT (each at
# its defaults: rbm_dist --cd-k 1 | --cd-k 10 | --pcd | --pt 10), then
# evaluates each with rbm_eval (AIS log-likelihood with a RAISE lower bound beside it,
# pseudo-likelihood, reconstruction, linear probe) and draws filters and samples.
#
#   bash tools/results.sh [MNIST_DIR]
#     env: RBM_NP=2 ranks, EPOCHS=20, AIS_RUNS=500, AIS_BETAS=14500, RAISE_IMAGES=1000,
#          RAISE_CHAINS=1, HIDDEN=500 (smaller values only to check the script quickly),
#          ROWS="cd1 cd10 pcd pt" (which models to train/evaluate now; the table lists
#          every model evaluated so far)
# A model whose metrics file has its last epoch is not trained again, and a model's
# evaluation is not repeated while its JSON files are newer than the model.
#
# Outputs in runs/results/: <name>.h5, <name>.log, <name>.jsonl, <name>-*.json,
# <name>-filters.png, <name>-samples.png and results.md (the table).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
rbm_mpi_env
src="${1:-/usr/share/datasets/fashion-mnist}"
out="${RBM_OUT:-$RBM_ROOT/runs/results}"
np="${RBM_NP:-2}"
epochs="${EPOCHS:-20}"
runs="${AIS_RUNS:-500}"
betas="${AIS_BETAS:-14500}"
raise_images="${RAISE_IMAGES:-1000}"
raise_chains="${RAISE_CHAINS:-1}"
hidden="${HIDDEN:-500}"
mkdir -p "$out"
data="$out/data.h5"
[ -f "$data" ] || "$RBM_BUILD/mnist2h5" "$src" "$data"
B="$RBM_BUILD"
common=(--hidden "$hidden" --epochs "$epochs" --batch-size 100 --binarize stochastic --progress never)
table="$out/results.md"
# The AIS column shows the number only when rbm_eval loglik calls it trustworthy (AIS ESS
# >= 10 and the AIS-RAISE sandwich within its noise + 1 nat, README "What the numbers mean");
# otherwise why not. RAISE is a stochastic lower bound over $raise_images evenly spaced test
# images; the sandwich is AIS minus RAISE on those same images (+- 3 s.e. of the paired
# differences).
rows="${ROWS:-cd1 cd10 pcd pt}"
configs=("cd1:--cd-k 1" "cd10:--cd-k 10" "pcd:--pcd" "pt:--pt 10")
for cfg in "${configs[@]}"; do
  name=${cfg%%:*}
  [[ " $rows " == *" $name "* ]] || continue
  read -r -a opts <<<"${cfg#*:}"
  if ! grep -q "\"epoch\": $epochs," "$out/$name.jsonl" 2>/dev/null; then
    mpirun -np "$np" "$B/rbm_dist" --data "$data" "${common[@]}" "${opts[@]}" --force \
      --checkpoint "$out/$name.h5" --metrics "$out/$name.jsonl" >"$out/$name.log"
  fi
  [ "$out/$name-loglik.json" -nt "$out/$name.h5" ] ||
    mpirun -np "$np" "$B/rbm_eval" loglik "$out/$name.h5" "$data" --binarize stochastic --runs "$runs" \
      --betas "$betas" --raise --raise-images "$raise_images" --raise-chains "$raise_chains" --json |
      tail -n1 >"$out/$name-loglik.json"
  [ "$out/$name-probe.json" -nt "$out/$name.h5" ] || {
    "$B/rbm_eval" pseudo "$out/$name.h5" "$data" --binarize stochastic --json | tail -n1 >"$out/$name-pseudo.json"
    "$B/rbm_eval" filters "$out/$name.h5" --data "$data" --out "$out/$name-filters.png" >/dev/null
    "$B/rbm_eval" samples "$out/$name.h5" --data "$data" --out "$out/$name-samples.png" >/dev/null
    "$B/rbm_eval" probe "$out/$name.h5" "$data" --json | tail -n1 >"$out/$name-probe.json"
  }
done

echo "| model | epochs | ranks | train wall (s) | test log-lik (AIS, all test images, nats) | on $raise_images test images: RAISE ± s.e. … AIS | sandwich AIS − RAISE ± 3 s.e. | AIS ESS (of $runs) | log Z ± 3 s.e. | pseudo-log-lik | recon MSE/pixel | probe acc (RBM / pixels) |" >"$table"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|" >>"$table"
label() { case $1 in cd1) echo "CD-1 (\`--cd-k 1\`)" ;; cd10) echo "CD-10 (\`--cd-k 10\`)" ;;
  pcd) echo "PCD (\`--pcd\`)" ;; pt) echo "PT (\`--pt 10\`)" ;; *) echo "$1" ;; esac; }
for cfg in "${configs[@]}"; do
  name=${cfg%%:*}
  [ -s "$out/$name-probe.json" ] && [ -s "$out/$name-loglik.json" ] || continue
  wall=$(grep -o '"seconds": [0-9.]*' "$out/$name.jsonl" | tail -n1 | awk '{printf "%.0f", $2}')
  j() { grep -o "\"$2\": *[-0-9.e+]*" "$out/$name-$1.json" | head -n1 | sed 's/.*: *//'; }
  if grep -q '"trustworthy": true' "$out/$name-loglik.json"; then
    ais=$(printf '%.2f' "$(j loglik mean_loglik)")
  elif grep -q '"untrustworthy_reason": "AIS ESS' "$out/$name-loglik.json"; then
    ais=$(printf 'ESS %.1f: not trustworthy' "$(j loglik ess)")
  else
    ais=$(printf 'sandwich %.2f: not trustworthy' "$(j loglik sandwich_width)")
  fi
  printf '| %s | %s | %s | %s | %s | %.2f ± %.2f … %.2f | %.2f ± %.2f | %.1f | %.2f ± %.2f | %.2f | %.4f | %.4f / %.4f |\n' "$(label "$name")" "$epochs" "$np" "$wall" \
    "$ais" "$(j loglik mean_loglik_raise)" "$(j loglik mean_loglik_raise_stderr)" "$(j loglik mean_loglik_ais_same_images)" \
    "$(j loglik sandwich_width)" "$(awk "BEGIN{print 3*$(j loglik sandwich_width_stderr)}")" "$(j loglik ess)" \
    "$(j loglik log_z)" "$(awk "BEGIN{print 3*$(j loglik log_z_stderr)}")" \
    "$(j pseudo pseudo_loglik)" "$(j pseudo recon_mse)" "$(j probe features_test_accuracy)" \
    "$(j probe raw_test_accuracy)" >>"$table"
done
cat "$table"
