#!/usr/bin/env bash
# tools/perf_table.sh — the README's speed table (issue 11): rbm_bench on 1 and 2
# ranks, fp32 and bf16, at 784x256/B64 and 784x500/B100, REPEAT times alternating
# (1 rank, 2 ranks, 2 ranks without the barrier's polling), then the peers
# (tools/peers.sh: scikit-learn's BernoulliRBM and the tutorial's PyTorch CD-1 loop)
# in the same session. On a shared machine use CLOCK=cpu (thread CPU time).
#
#   bash tools/perf_table.sh            (env: REPEAT=3, STEPS=300, CLOCK=wall|cpu)
#
# Output: runs/perf/bench-<n>-<np>[-nospin].txt, peers.txt, and the summary lines.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
rbm_mpi_env
out="${RBM_OUT:-$RBM_ROOT/runs/perf}"
repeat="${REPEAT:-3}"
steps="${STEPS:-300}"
clock="${CLOCK:-wall}"
mkdir -p "$out"
data="$out/fashion.h5"
[ -f "$data" ] || "$RBM_BUILD/mnist2h5" /usr/share/datasets/fashion-mnist "$data" >/dev/null
bench=("$RBM_BUILD/rbm_bench" --data "$data" --shapes 256x64,500x100 --precision fp32,bf16
       --steps "$steps" --gemm-seconds 1 --clock "$clock")
for ((i = 1; i <= repeat; ++i)); do
  mpirun -np 1 "${bench[@]}" >"$out/bench-$i-1.txt"
  mpirun -np 2 "${bench[@]}" >"$out/bench-$i-2.txt"
  RBM_BARRIER_SPIN_US=0 mpirun -np 2 -x RBM_BARRIER_SPIN_US "${bench[@]}" >"$out/bench-$i-2-nospin.txt"
  for f in "$out/bench-$i-1.txt" "$out/bench-$i-2.txt" "$out/bench-$i-2-nospin.txt"; do
    echo "== $(basename "$f")"
    grep -v '^#' "$f"
  done
done
bash "$RBM_ROOT/tools/peers.sh" --clock "$clock" | tee "$out/peers.txt"
