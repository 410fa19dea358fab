#!/bin/bash
# tests/multinode/test_slurm_launchers.sh BIN_DIR [SOURCE_DIR]
#
# A 2-node Slurm cluster on this machine (cluster.sh with CLUSTER_NODES=2: slurmd -N n1 and
# -N n2, each in its own UTS namespace, own port, spool and TmpFS). Submits
# `sbatch -N 2 --ntasks-per-node=2 slurm/rbm_dist.sbatch` twice at once, with the mpirun
# launcher and with RBM_LAUNCHER=srun (srun --mpi=pmix), and asserts for each:
#   - COMPLETED 0:0, the script ran on n[1-2], rbm_dist reported 4 ranks, and slurmd on
#     n2 launched the job's step (ranks/orted on the second node);
#   - a valid model whose weights are BITWISE those of the same layout on one host
#     (`mpirun -np 4 rbm_dist --node-size 2`), and differ from 4 ranks sharing one node:
#     the trainer saw two hosts of two ranks;
#   - no PMIx "File exists" in the slurmd logs: the per-node TmpFS keeps the two
#     slurmstepds' TmpFS/spmix_appdir_<uid>_<job>.<step> folders apart (with the default
#     TmpFS=/tmp the srun step fails at launch).
# Exit 77 (ctest SKIP) without Slurm/Open MPI or when not root.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${1:?usage: test_slurm_launchers.sh BIN_DIR [SOURCE_DIR]}
src=${2:-$(cd "$here/../.." && pwd)}
export CLUSTER_NODES=2
# shellcheck source=../slurm/cluster.sh
source "$here/../slurm/cluster.sh"
# shellcheck source=../slurm/checks.sh
source "$here/../slurm/checks.sh"
# shellcheck source=multinode.sh
source "$here/multinode.sh"

mn_require
cluster_test_setup "$bin_dir"   # 2-node cluster up, cd $CLUSTER_DIR/work, mnist/ written
"$bin_dir/mnist2h5" mnist data.h5 --validation-size 0 >/dev/null || die "mnist2h5 failed"
H=32
opts=(--hidden $H --epochs 3 --batch-size 20 --seed 5 --monitor-size 100)

# Both emulated nodes share this machine's 2 cores, which the batch script cannot know
# (it sees 2 tasks on 2 cores per node): no binding, and ranks that wait yield the core.
declare -A job
t0=$SECONDS
job[mpirun]=$(RBM_LAUNCHER=mpirun RBM_MPIRUN_FLAGS="--bind-to none --mca mpi_yield_when_idle 1" \
  sbatch --parsable -N 2 --ntasks-per-node=2 -o mpirun.out "$src/slurm/rbm_dist.sbatch" \
  data.h5 run_mpirun "${opts[@]}") || die "sbatch (mpirun) failed"
job[srun]=$(RBM_LAUNCHER=srun RBM_SRUN_FLAGS="--export=ALL,OMPI_MCA_mpi_yield_when_idle=1" \
  sbatch --parsable -N 2 --ntasks-per-node=2 -o srun.out "$src/slurm/rbm_dist.sbatch" \
  data.h5 run_srun "${opts[@]}") || die "sbatch (srun) failed"
log "submitted: mpirun launcher job ${job[mpirun]}, srun launcher job ${job[srun]} (-N 2 --ntasks-per-node=2)"

# The references, while the jobs run: the same layout on one host, and one node of 4
# (Open MPI's root/oversubscription settings for these commands only: cluster.sh keeps
# them out of the jobs' environment).
( mn_mpi_env; exec timeout -k 5 120 mpirun -np 4 --bind-to none "$bin_dir/rbm_dist" --progress never --data data.h5 \
  "${opts[@]}" --node-size 2 --checkpoint one_host.h5 ) >one_host.out 2>&1 ||
  { cat one_host.out >&2; die "reference run (--node-size 2) failed"; }
( mn_mpi_env; exec timeout -k 5 120 mpirun -np 4 --bind-to none "$bin_dir/rbm_dist" --progress never \
  --data data.h5 "${opts[@]}" --checkpoint one_node.h5 ) >one_node.out 2>&1 ||
  { cat one_node.out >&2; die "reference run (one node) failed"; }

for l in mpirun srun; do
  id=${job[$l]}
  read -r st ec < <(wait_job_done "$id" 120)
  if [[ $st == GONE ]] && grep -q '^rbm_dist.sbatch: rbm_dist exited with 0 ' "$l.out"; then
    st=COMPLETED ec=0:0   # purged MinJobAge after its end; its log is the record
  fi
  log "$l launcher, job $id: $st $ec ($((SECONDS - t0))s after submission)"
  [[ $st == COMPLETED && $ec == 0:0 ]] || { cat "$l.out" >&2; die "$l launcher: job $id ended $st $ec"; }
  grep -qF "rbm_dist.sbatch: job $id restart 0 on n[1-2] " "$l.out" ||
    { head -n 3 "$l.out" >&2; die "$l launcher: job $id did not run on n[1-2]"; }
  grep -q "^rbm_dist.sbatch: 4 tasks x 1 CPUs each, launcher $l " "$l.out" || die "$l launcher: not 4 tasks via $l"
  grep -v '^rbm_dist.sbatch:' "$l.out" | grep -q '^rbm_dist .*: 4 ranks' ||
    { cat "$l.out" >&2; die "$l launcher: rbm_dist did not report 4 ranks"; }
  grep -q "launch task StepId=$id\.0 " "$CLUSTER_DIR/log/slurmd-n2.log" ||
    die "$l launcher: slurmd on n2 never launched step $id.0"
  check_model "run_$l/model.h5" 784 $H
  same_model "run_$l/model.h5" one_host.h5
  if h5diff "run_$l/model.h5" one_node.h5 /model/weights /model/weights >/dev/null 2>&1; then
    die "$l launcher: the model equals 4 ranks on one node's: the job did not span two hosts"
  fi
done
if grep -h 'File exists' "$CLUSTER_DIR"/log/slurmd-n*.log >&2; then
  die "PMIx temp-folder clash in the slurmd logs (above)"
fi
log "PASS: sbatch -N 2 with mpirun and with srun --mpi=pmix: 2x2 models bitwise = --node-size 2 on one host (${SECONDS}s)"
