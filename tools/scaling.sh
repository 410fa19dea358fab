#!/bin/bash
# tools/scaling.sh [OUT_DIR] — the measured part of README "Scaling beyond one node".
#
# Measures on this machine, with the build in ./build (bash tools/setup.sh first):
#   1. compute: one rank's CD-1 step time against the per-rank batch b (784 x 500,
#      rbm_bench, one core), fitted as t(b) = t0 + c b;
#   2. intra-node reduction: rbm_dist with 2 ranks on one node, the epoch line's
#      "reduce" seconds per step (shared-memory sum + update + barriers);
#   3. cross-node allreduce over Open MPI's TCP path: two emulated nodes (UTS namespaces,
#      tests/multinode/uts_agent.sh, --bind-to none), MPI_Allreduce of m floats between
#      the two node leaders, fitted as t(m) = alpha + beta * 4m bytes;
#   4. overlap: rbm_dist on the two emulated nodes (1 rank each), --overlap on and off,
#      the "cross-node reduction: X ms per step not hidden" line.
#   5. the cost model: the fit of 1 and, with python3, the README table (assumed networks).
# Needs root (unshare --uts) for 3 and 4. Writes OUT_DIR/scaling.txt (default runs/scaling).
# The machine is shared: every figure is the best (minimum) of REPEAT runs.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/runs/scaling}
repeat=${REPEAT:-3}
bin=${RBM_BIN:-$root/build}
mkdir -p "$out"
work=$(mktemp -d /tmp/rbm-scaling.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
  OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_btl_vader_single_copy_mechanism=none \
  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
report=$out/scaling.txt
: >"$report"
say() { echo "$*" | tee -a "$report"; }
best() { sort -g | head -1; }

data=$work/fashion.h5
if [[ -d /usr/share/datasets/fashion-mnist ]]; then
  "$bin/mnist2h5" /usr/share/datasets/fashion-mnist "$data" >/dev/null || exit 1
else
  perl "$root/tests/slurm/make_idx.pl" "$work/idx" 20000 100 && "$bin/mnist2h5" "$work/idx" "$data" >/dev/null || exit 1
fi
say "# rbm_dist scaling measurements, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"

# ---- 1. compute time per step vs per-rank batch ---------------------------------------
say "## 1. compute: 784x500 CD-1 step on one rank (rbm_bench, best of $repeat)"
say "# b  step_ms"
for b in 10 25 50 100 200 400 1000; do
  t=$(for _ in $(seq "$repeat"); do
        "$bin/rbm_bench" --data "$data" --shapes "500x$b" --steps $((40000 / b + 20)) --gemm-seconds 0.2 2>/dev/null |
          awk '$1 == 500 {print 1000 * $2 / $5}'
      done | best)
  say "$b $t"
done

# ---- 2. intra-node reduction: 2 ranks on one node -----------------------------------------
say "## 2. intra-node reduction (2 ranks, one node, 784x500, batch 200): reduce ms per step"
t=$(for _ in $(seq "$repeat"); do
      rm -f "$work/m.jsonl"
      mpirun -np 2 --bind-to none "$bin/rbm_dist" --progress never --data "$data" --hidden 500 \
        --batch-size 200 --epochs 1 --monitor-size 100 --checkpoint "$work/m.h5" \
        --metrics "$work/m.jsonl" >/dev/null 2>&1
      perl -ne 'print 1000 * $2 / $1, "\n" if /"step": (\d+).*"reduce_seconds": ([0-9.e+-]+)/' "$work/m.jsonl"
    done | best)
say "reduce_ms_per_step $t"

if [[ $(id -u) -ne 0 ]] || ! command -v unshare >/dev/null; then
  say "## 3-4 skipped: two emulated nodes need root (unshare --uts)"
  exit 0
fi
two_nodes=(mpirun --mca plm_rsh_agent "$root/tests/multinode/uts_agent.sh" --host nA:1,nB:1 -np 2 --bind-to none)

# ---- 3. cross-node allreduce alpha, beta over TCP --------------------------------------------
cat >"$work/allreduce.c" <<'C'
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank; MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  for (long m = 1; m <= (1L << 22); m *= 4) {
    float* buf = calloc(m, sizeof(float));
    int reps = m < 65536 ? 200 : 20;
    double best = 1e9;
    for (int r = 0; r < reps + 5; ++r) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      MPI_Allreduce(MPI_IN_PLACE, buf, (int)m, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double t = MPI_Wtime() - t0;
      MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (r >= 5 && t < best) best = t;
    }
    if (rank == 0) printf("%ld %.3f\n", m * 4, best * 1e6);
    free(buf);
  }
  MPI_Finalize();
  return 0;
}
C
mpicc -O2 -o "$work/allreduce" "$work/allreduce.c" || exit 1
say "## 3. MPI_Allreduce between two emulated nodes over TCP loopback (best of reps): bytes  us"
"${two_nodes[@]}" "$work/allreduce" 2>/dev/null | tee -a "$report"

# ---- 4. overlap: exposed cross-node communication per step ---------------------------------
say "## 4. rbm_dist on 2 emulated nodes x 1 rank, 784x500: ms per step not hidden (best of $repeat)"
say "# batch overlap exposed_ms step_ms"
for b in 100 1000; do
  for ov in off on; do
    line=$(for _ in $(seq "$repeat"); do
             "${two_nodes[@]}" "$bin/rbm_dist" --progress never --data "$data" --hidden 500 \
               --batch-size $b --epochs 1 --monitor-size 100 --overlap $ov --checkpoint "$work/m.h5" 2>/dev/null |
               sed -n 's/^cross-node reduction: \([0-9.]*\) ms per step.*step \([0-9.]*\) ms.*/\1 \2/p'
           done | sort -g | head -1)
    say "$b $ov $line"
  done
done

# ---- 5. the cost model (README "Scaling beyond one node") -------------------------------------
# t_step = t0 + c b  (+ t_intra when a node has > 1 rank)  (+ exposed cross-node allreduce)
say "## 5. model from the fit of 1 (t0, c) and the assumed networks (see README)"
awk -v f="$report" 'BEGIN {
  while ((getline l < f) > 0) {
    if (l ~ /^## 1/) sec = 1; else if (l ~ /^## /) sec = 0;
    if (sec == 1 && l ~ /^[0-9]/) { split(l, a, " "); n++; x[n] = a[1]; y[n] = a[2] / 1000 }
  }
  for (i = 1; i <= n; i++) { sx += x[i]; sy += y[i]; sxx += x[i] * x[i]; sxy += x[i] * y[i] }
  c = (n * sxy - sx * sy) / (n * sxx - sx * sx); t0 = (sy - c * sx) / n;
  printf "fit: t_comp(b) = %.3f ms + %.4f ms * b  (%.0f samples/s per rank at large b)\n", t0 * 1e3, c * 1e3, 1 / c
}' | tee -a "$report"
# The README table from the fit (t0, c) and the assumed networks; needs python3.
if command -v python3 >/dev/null; then
  fit=$(sed -n 's/^fit: t_comp(b) = \([0-9.]*\) ms + \([0-9.]*\) ms \* b.*/\1 \2/p' "$report")
  python3 - $fit <<'PY' | tee -a "$report"
import math, sys
t0, c = float(sys.argv[1]) / 1e3, float(sys.argv[2]) / 1e3
nb = 4 * (784 * 500 + 784 + 500 + 3)
nets = {"10GbE": (30e-6, 0.91e-9), "IB": (2e-6, 0.08e-9)}
tc = lambda b: t0 + c * b
def step(P, B, cpn, net, overlap=True):
    b = B / P
    if b < 1: return None
    L, N = min(P, cpn), math.ceil(P / cpn)
    ti = 15e-6 + nb / 4e9 if L > 1 else 0
    a, be = nets[net]
    tx = 0
    if N > 1:
        tx = 2 * math.log2(N) * a + 2 * (N - 1) / N * nb * be
        if overlap: tx = max(tx - 0.4 * tc(b), tx / 12)
    return tc(b) + ti + tx
for title, Bf, ref in [("global batch 100", lambda P: 100, lambda P: 100 / tc(100)),
                       ("per-rank batch 100", lambda P: 100 * P, lambda P: 100 / tc(100)),
                       ("per-rank batch 1000", lambda P: 1000 * P, lambda P: 1000 / tc(1000))]:
    print(f"\n{title}: ranks | 10GbE 16c | 10GbE 128c | IB 16c | IB 128c  (samples/s, efficiency)")
    for P in [1, 16, 64, 128, 256, 1024]:
        cells = []
        for net in ["10GbE", "IB"]:
            for cpn in [16, 128]:
                t = step(P, Bf(P), cpn, net)
                cells.append("-" if t is None else f"{Bf(P) / t:,.0f} ({100 * Bf(P) / t / (P * ref(P)):.0f}%)")
        print(P, " | ".join(cells))
PY
fi
say "# written to $report"
