#!/bin/bash
# tests/multinode/test_slurm_node_loss.sh BIN_DIR [SOURCE_DIR]
#
# Losing a node under Slurm: on the 2-node cluster (cluster.sh, CLUSTER_NODES=2), a
# `sbatch -N 2 --ntasks-per-node=2 slurm/rbm_dist.sbatch` job is training; the test
# SIGKILLs every rbm_dist process on node n2 (found by the UTS namespace of the slurmd n2
# that this test started; slurmstepd daemonizes, so they are not its descendants) and
# asserts, per launcher:
#   mpirun: the launcher exits non-zero within 10 s of the kill (the batch script's
#           "rbm_dist exited with" line), with exactly one line naming the node:
#           "mpirun noticed that process rank R with PID P on node n2 exited on signal 9 (Killed).";
#   srun:   exactly one line "srun: error: n2: tasks 2-3: Killed" and an end within
#           KillWait + 5 s. NOT within 10 s in general: the ranks left on n1 wait forever in
#           the cross-node reduction; Slurm sends them SIGTERM (which rbm_dist takes as
#           "stop after this step") and SIGKILL KillWait seconds later (10 s on this test
#           cluster, 30 s by default). The time is logged; README "Two nodes on one machine".
# and for both: the job ends FAILED and no rank is left on either node.
# Exit 77 (ctest SKIP) without Slurm/Open MPI or when not root.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${1:?usage: test_slurm_node_loss.sh BIN_DIR [SOURCE_DIR]}
src=${2:-$(cd "$here/../.." && pwd)}
export CLUSTER_NODES=2
# shellcheck source=../slurm/cluster.sh
source "$here/../slurm/cluster.sh"
# shellcheck source=../slurm/checks.sh
source "$here/../slurm/checks.sh"
# shellcheck source=multinode.sh
source "$here/multinode.sh"
LIMIT_S=10

mn_require
cluster_test_setup "$bin_dir"
"$bin_dir/mnist2h5" mnist data.h5 --validation-size 0 >/dev/null || die "mnist2h5 failed"
slurmd_n1=${CLUSTER_PIDS[2]} slurmd_n2=${CLUSTER_PIDS[3]}
kill_wait=$(scontrol show config | sed -n 's/^KillWait *= *\([0-9]*\) sec.*/\1/p')
[[ -n $kill_wait ]] || die "no KillWait in scontrol show config"

# ms since EPOCH_NS (date +%s%N) at which the batch script logged that rbm_dist exited.
launcher_exit_ms() { # LOG
  local t
  t=$(sed -n 's/^rbm_dist.sbatch: rbm_dist exited with [0-9]* at \([0-9:]*\)$/\1/p' "$1" | tail -n1)
  [[ -n $t ]] || return 1
  echo $((($(date -d "today $t" +%s) * 1000) - kill_ns / 1000000))
}

for l in mpirun srun; do
  job=$(RBM_LAUNCHER=$l RBM_MPIRUN_FLAGS="--bind-to none --mca mpi_yield_when_idle 1" \
        RBM_SRUN_FLAGS="--export=ALL,OMPI_MCA_mpi_yield_when_idle=1" \
        sbatch --parsable -N 2 --ntasks-per-node=2 -o "$l.out" "$src/slurm/rbm_dist.sbatch" \
        data.h5 "run_$l" --hidden 32 --epochs 100000 --batch-size 20 --seed 5 \
        --monitor-size 100 --checkpoint-every 1000) || die "sbatch ($l) failed"
  trained() { [[ -s run_$l/metrics.jsonl ]]; }
  wait_for 60 trained || { cat "$l.out" >&2; die "$l launcher: job $job trained no epoch within 60 s"; }
  on_n1=$(mn_procs_in_ns_of "$slurmd_n1" rbm_dist | tr '\n' ' ')
  on_n2=$(mn_procs_in_ns_of "$slurmd_n2" rbm_dist | tr '\n' ' ')
  [[ $(wc -w <<<"$on_n1") == 2 && $(wc -w <<<"$on_n2") == 2 ]] ||
    die "$l launcher: expected 2 ranks per node, n1: '$on_n1' n2: '$on_n2'"
  kill_ns=$(date +%s%N)
  # shellcheck disable=SC2086  # one word per PID
  kill -KILL $on_n2
  log "$l launcher, job $job: killed the ranks on n2 ($on_n2); n1 has $on_n1"
  read -r st ec < <(wait_job_done "$job" $((kill_wait + 30)))
  end_ms=$((($(date +%s%N) - kill_ns) / 1000000))
  exit_ms=$(launcher_exit_ms "$l.out") || { cat "$l.out" >&2; die "$l launcher: the script did not log rbm_dist's exit"; }
  log "$l launcher: rbm_dist (the launcher) exited ~${exit_ms} ms after the kill (1 s resolution); job $st $ec seen at $end_ms ms"
  [[ $st == FAILED || ($st == GONE && $(grep -c '^rbm_dist.sbatch: failed (exit' "$l.out") == 1) ]] ||
    { cat "$l.out" >&2; die "$l launcher: job $job ended $st $ec, expected FAILED"; }
  case $l in
    mpirun)
      pattern='^mpirun noticed that process rank [23] with PID [0-9]+ on node n2 exited on signal 9 \(Killed\)\.$'
      limit_ms=$(((LIMIT_S + 1) * 1000)) ;;   # +1: the script's time stamps have 1 s resolution
    srun)
      pattern='^srun: error: n2: tasks 2-3: Killed$'
      limit_ms=$(((kill_wait + 5) * 1000)) ;;
  esac
  n=$(grep -cE "$pattern" "$l.out")
  ((n == 1)) || { cat "$l.out" >&2; die "$l launcher: $n lines matching '$pattern', expected 1"; }
  log "$l launcher: the line: $(grep -E "$pattern" "$l.out")"
  ((exit_ms <= limit_ms)) || { cat "$l.out" >&2; die "$l launcher: ended ${exit_ms} ms after the kill (limit ${limit_ms} ms)"; }
  no_ranks() { [[ -z $(mn_procs_in_ns_of "$slurmd_n1" rbm_dist) && -z $(mn_procs_in_ns_of "$slurmd_n2" rbm_dist) ]]; }
  wait_for 10 no_ranks || die "$l launcher: ranks still running after the job ended"
done
log "PASS: a node's ranks killed -> mpirun launcher ends within ${LIMIT_S} s naming n2; srun names n2 and ends after KillWait=${kill_wait}s (${SECONDS}s)"
