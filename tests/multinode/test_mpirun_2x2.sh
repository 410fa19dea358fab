#!/bin/bash
# tests/multinode/test_mpirun_2x2.sh BIN_DIR
#
# Two nodes on one machine with plain mpirun: `mpirun --mca plm_rsh_agent uts_agent.sh
# --host nA:2,nB:2 -np 4`, every node a UTS namespace with its own hostname. Asserts:
#   1. placement: ranks 0,1 report hostname nA and 2,3 nB, each with local size 2
#      (Open MPI sees two hosts);
#   2. rbm_dist on that 2x2 layout (default options, so also the default --shuffle epoch)
#      ends with BITWISE the weights of the same layout on one host
#      (`mpirun -np 4 rbm_dist --node-size 2`): the cross-node path (node leaders'
#      MPI_Allreduce over TCP) computes exactly what the shared-memory path does;
#   3. and NOT those of 4 ranks sharing one node (`--node-size 0` on one host): the
#      trainer really split the job into two nodes by hostname (MPI_COMM_TYPE_SHARED).
# Exit 77 (ctest SKIP) when not root or Open MPI/hdf5-tools are missing.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${1:?usage: test_mpirun_2x2.sh BIN_DIR}
# shellcheck source=../slurm/cluster.sh
source "$here/../slurm/cluster.sh"
# shellcheck source=../slurm/checks.sh
source "$here/../slurm/checks.sh"
# shellcheck source=multinode.sh
source "$here/multinode.sh"

mn_begin "$bin_dir"   # work folder with data.h5 (600 train, 100 test images)

# ---- 1. where the ranks land -----------------------------------------------------------
timeout -k 5 60 "${MN_MPIRUN_2X2[@]}" bash -c \
  'echo "$OMPI_COMM_WORLD_RANK $(hostname) $OMPI_COMM_WORLD_LOCAL_RANK/$OMPI_COMM_WORLD_LOCAL_SIZE"' \
  >placement.out 2>&1 || { cat placement.out >&2; die "mpirun over uts_agent.sh failed"; }
placement=$(grep -E "^[0-9]+ " placement.out | sort -n | tr "\n" ";")
[[ $placement == "0 nA 0/2;1 nA 1/2;2 nB 0/2;3 nB 1/2;" ]] ||
  die "ranks placed as '$placement', expected 0,1 on nA and 2,3 on nB"
log "placement: $placement"

# ---- 2. the 2x2 job == the same layout on one host ----------------------------------------
opts=(--progress never --data data.h5 --hidden 32 --epochs 2 --batch-size 20 --seed 5
      --monitor-size 100)
t0=$SECONDS
timeout -k 5 120 "${MN_MPIRUN_2X2[@]}" "$bin_dir/rbm_dist" "${opts[@]}" --checkpoint two_nodes.h5 \
  >two_nodes.out 2>&1 || { cat two_nodes.out >&2; die "the 2x2 rbm_dist job failed"; }
log "2 nodes x 2 ranks: $(grep -c '^epoch' two_nodes.out) epochs in $((SECONDS - t0))s"
grep -q '^rbm_dist .*: 4 ranks' two_nodes.out || die "rbm_dist did not report 4 ranks"
timeout -k 5 120 mpirun -np 4 --bind-to none "$bin_dir/rbm_dist" "${opts[@]}" --node-size 2 \
  --checkpoint one_host.h5 >one_host.out 2>&1 || { cat one_host.out >&2; die "the one-host run failed"; }
timeout -k 5 120 mpirun -np 4 --bind-to none "$bin_dir/rbm_dist" "${opts[@]}" \
  --checkpoint one_node.h5 >one_node.out 2>&1 || { cat one_node.out >&2; die "the one-node run failed"; }
check_model two_nodes.h5 784 32
same_model two_nodes.h5 one_host.h5

# ---- 3. ... and not the one-node layout ---------------------------------------------------
if h5diff two_nodes.h5 one_node.h5 /model/weights /model/weights >/dev/null 2>&1; then
  die "the 2-node model equals the 1-node (4 ranks sharing a model) one: was the job split by host at all?"
fi
log "as expected, 4 ranks on one node (--node-size 0) sum in another order: weights differ"
log "PASS: 2 nodes x 2 ranks over uts_agent.sh == mpirun -np 4 --node-size 2, bitwise (${SECONDS}s)"
